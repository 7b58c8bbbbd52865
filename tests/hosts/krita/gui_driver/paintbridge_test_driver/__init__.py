"""TEST ONLY: drives the Paintbridge plug-in through its real menu action in the Krita GUI.

Reads $PAINTBRIDGE_KRITA_TEST_CONFIG (JSON: out, prompt), and once the main window exists:
makes a document with a selection, checks Tools > Scripts > Paintbridge > Fill Selection is in
the menu and the docker exists, triggers the action, waits for the new layer, checks that every
pixel outside the selection is unchanged, writes the verdict to `out`, and quits Krita.
"""

import json
import os
import traceback

from krita import Krita, Selection
from PyQt5.QtCore import QTimer

W, H = 128, 96
SELECT = (100, 70, 60, 60)  # reaches past the bottom-right corner
SAFETY_MS = 240000

_state = {"checks": {}, "failures": [], "done": False}


def _config():
    with open(os.environ["PAINTBRIDGE_KRITA_TEST_CONFIG"]) as handle:
        return json.load(handle)


def _write(extra=None):
    data = dict(_state)
    data.update(extra or {})
    out = _config()["out"]
    with open(out + ".tmp", "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    os.replace(out + ".tmp", out)


def _check(name, ok, detail=None):
    _state["checks"][name] = {"ok": bool(ok), "detail": detail}
    if not ok:
        _state["failures"].append(f"{name}: {detail}")


def _quit(doc=None):
    _state["done"] = True
    try:
        _write()
    finally:
        if doc is not None:
            doc.setModified(False)
            doc.close()
        Krita.instance().action("file_quit").trigger()


def _menu_texts(menu, path=()):
    """(menu path, action text, action objectName) for every action under a QMenu/QMenuBar."""
    out = []
    for action in menu.actions():
        text = action.text().replace("&", "")
        sub = action.menu()
        if sub is not None:
            out.extend(_menu_texts(sub, path + (text,)))
        else:
            out.append((path, text, action.objectName()))
    return out


def _pattern():
    data = bytearray(W * H * 4)
    for y in range(H):
        for x in range(W):
            i = (y * W + x) * 4
            data[i : i + 4] = bytes(((x * 5) % 256, (y * 7) % 256, (x + y) % 256, 255))
    return bytes(data)


def _start():
    try:
        app = Krita.instance()
        window = app.activeWindow()
        config = _config()
        from paintbridge_krita.extension import controller

        ctrl = controller()
        ctrl.params.update(prompt=config["prompt"], steps=4, seed=11)

        doc = app.createDocument(W, H, "paintbridge-gui-test", "RGBA", "U8", "", 72.0)
        window.addView(doc)
        source = doc.createNode("source", "paintlayer")
        doc.rootNode().addChildNode(source, None)
        source.setPixelData(_pattern(), 0, 0, W, H)
        doc.setActiveNode(source)
        selection = Selection()
        selection.select(*(SELECT + (255,)))
        doc.setSelection(selection)
        doc.refreshProjection()
        doc.waitForDone()
        mask = bytes(doc.selection().pixelData(0, 0, W, H))
        before_source = bytes(source.pixelData(0, 0, W, H))
        before = bytes(doc.pixelData(0, 0, W, H))
        names_before = [n.name() for n in doc.rootNode().childNodes()]

        entries = _menu_texts(window.qwindow().menuBar())
        found = [e for e in entries if e[2] == "paintbridge_fill_selection"]
        _check(
            "menu entry",
            # Krita 5.1 puts it in Tools > Scripts itself; later versions may make the submenu
            found
            and found[0][0][:2] == ("Tools", "Scripts")
            and found[0][1] == "Paintbridge: Fill Selection",
            found,
        )
        dockers = [d.objectName() for d in app.dockers()]
        _check("docker", any("paintbridge" in name for name in dockers), dockers)
        action = app.action("paintbridge_fill_selection")
        _check("action", action is not None, None)
        _check(
            "active layer",
            doc.activeNode() is not None and doc.activeNode().name() == "source",
            None,
        )

        def finished(busy):
            if busy:
                return
            try:
                _check("no error", ctrl.last_error is None, ctrl.last_error)
                doc.refreshProjection()
                doc.waitForDone()
                after = bytes(doc.pixelData(0, 0, W, H))
                names = [n.name() for n in doc.rootNode().childNodes()]
                _state["layers"] = names
                new = [n for n in names if n not in names_before]
                _check("one new layer", len(new) == 1, names)
                _check(
                    "above the source",
                    len(new) == 1 and names.index(new[0]) == names.index("source") + 1,
                    names,
                )
                _check(
                    "source unchanged", bytes(source.pixelData(0, 0, W, H)) == before_source, None
                )
                outside = inside = inside_changed = 0
                for i in range(W * H):
                    p = slice(i * 4, i * 4 + 4)
                    if mask[i] == 0:
                        outside += after[p] != before[p]
                    else:
                        inside += 1
                        inside_changed += after[p] != before[p]
                _check("outside unchanged", outside == 0, outside)
                _check("inside changed", inside_changed > inside // 2, [inside_changed, inside])
            except Exception:
                _state["failures"].append(traceback.format_exc())
            QTimer.singleShot(100, lambda: _quit(doc))

        ctrl.busy_changed.connect(finished)
        action.trigger()
        _check("job started", ctrl.busy, ctrl.last_error)
        if not ctrl.busy:
            _quit(doc)
    except Exception:
        _state["failures"].append(traceback.format_exc())
        _quit()


def _safety():
    if not _state["done"]:
        _state["failures"].append(f"timed out after {SAFETY_MS // 1000} s")
        _quit()


def _on_window():
    QTimer.singleShot(1500, _start)


Krita.instance().notifier().windowCreated.connect(_on_window)
QTimer.singleShot(SAFETY_MS, _safety)
