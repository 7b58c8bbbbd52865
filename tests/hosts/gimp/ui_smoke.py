"""Run by test_gimp3_ui.py with GIMP 3's Python (python3 with PyGObject, in the chroot where
there is one) on an Xvfb display: builds the GIMP 3 plug-in's interactive widgets (the progress
window with its Cancel button, the "nothing is selected" question) with real GTK and clicks
them. GIMP's own calls are recorded by a stand-in namespace: the widgets, not GIMP, are tested.

    python3 ui_smoke.py BUNDLE_DIR RESULT.json
"""

import json
import sys
import types

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import GLib, Gtk  # noqa: E402

bundle, result_path = sys.argv[1], sys.argv[2]
main_file = bundle + "/paintbridge-gimp.py"
source = open(main_file).read().replace('if __name__ == "__main__":', "if False:")
plugin = types.ModuleType("paintbridge_gimp3")
plugin.__file__ = main_file
exec(compile(source, main_file, "exec"), plugin.__dict__)

calls = []
plugin.Gimp = types.SimpleNamespace(
    progress_init=lambda text: calls.append(("init", text)),
    progress_update=lambda fraction: calls.append(("update", fraction)),
    progress_set_text=lambda text: calls.append(("text", text)),
    progress_end=lambda: calls.append(("end",)),
)
facts = {}
progress = plugin.Progress("Paintbridge: Fill Selection", True)
progress(0.5, "step 1 of 2")
facts["bar"] = [progress.bar.get_fraction(), progress.bar.get_text()]
facts["cancel_before_click"] = progress.should_cancel()
progress.window.response(Gtk.ResponseType.CANCEL)  # the Cancel button
facts["cancel_after_click"] = progress.should_cancel()
progress.close()
facts["window_closed"] = progress.window is None
facts["gimp_calls"] = calls


def answer(response):
    for window in Gtk.Window.list_toplevels():
        if isinstance(window, Gtk.MessageDialog):
            window.response(response)
    return False


GLib.timeout_add(200, answer, Gtk.ResponseType.YES)
facts["ask_yes"] = plugin._ask_whole_layer()
GLib.timeout_add(200, answer, Gtk.ResponseType.NO)
facts["ask_no"] = plugin._ask_whole_layer()
with open(result_path, "w") as handle:
    json.dump(facts, handle)
