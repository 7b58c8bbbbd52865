#!/usr/bin/env python3
"""paintbridge for GIMP 3: Fill Selection, Generate and Image to Image under Filters > Paintbridge
(and in the Layers dialog's context menu), through the local paintbridge server.

Installed as plug-ins/paintbridge-gimp/paintbridge-gimp.py with `hostkit/` and
paintbridge_gimpflow.py beside it (`paintbridge plugins install --gimp`). The flow (what to read,
what to send, where the layer goes) is paintbridge_gimpflow, shared with the GIMP 2.10 plug-in;
this file only reads and writes GIMP images and draws the dialogs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import paintbridge_gimpflow as flow  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402
from hostkit.client import RESULT_KEPT, Cancelled, PaintbridgeError  # noqa: E402
from hostkit.geometry import Box  # noqa: E402
from hostkit.tasks import MAX_FIELD_SEED  # noqa: E402

RGBA_U8 = "R'G'B'A u8"
MASK_U8 = "Y u8"
MENU = "<Image>/Filters/Paintbridge"
LAYERS_MENU = "<Layers>/Paintbridge"
READWRITE = GObject.ParamFlags.READWRITE

# procedure name -> (command, menu label, what it does)
PROCEDURES = {
    "paintbridge-fill-selection": (
        "fill",
        "_Fill Selection...",
        "Regenerate the selection from a prompt; the result is a new layer above the active "
        "one whose alpha is the selection, so nothing outside the selection changes.",
    ),
    "paintbridge-generate": (
        "generate",
        "_Generate...",
        "Generate an image from a prompt into a new layer of the image's size (or a new image "
        "when none is open).",
    ),
    "paintbridge-img2img": (
        "img2img",
        "_Image to Image...",
        "Redraw the active layer (or the selection within it) from a prompt, keeping as much of "
        "it as the strength says; the result is a new layer above it.",
    ),
}


def _gegl_rect(box):
    return Gegl.Rectangle.new(box.x, box.y, box.width, box.height)


def _last(values, n):
    """The last n items of a GIMP return tuple (some calls gain a leading success flag)."""
    values = tuple(values)
    return values[len(values) - n :]


class Gimp3Host(flow.Host):
    """Reads and writes one GIMP 3 image for paintbridge_gimpflow."""

    def __init__(self, image, layer):
        self.image = image
        self.layer = layer

    def image_box(self):
        if self.image is None:
            return None
        return Box(0, 0, self.image.get_width(), self.image.get_height())

    def is_indexed(self):
        return self.image.get_base_type() == Gimp.ImageBaseType.INDEXED

    def locked_group(self):
        group = self.layer.get_parent() if self.layer is not None else None
        while group is not None:
            if group.get_lock_content():
                return group.get_name()
            group = group.get_parent()
        return None

    def image_is_open(self):
        return self.image.is_valid()

    def layer_box(self):
        x, y = _last(self.layer.get_offsets(), 2)
        return Box(x, y, self.layer.get_width(), self.layer.get_height())

    def selection_box(self):
        non_empty, x1, y1, x2, y2 = _last(Gimp.Selection.bounds(self.image), 5)
        if not non_empty or x2 <= x1 or y2 <= y1:
            return None
        return Box.from_edges(x1, y1, x2, y2)

    def read_selection(self, box):
        buffer = self.image.get_selection().get_buffer()
        return bytes(buffer.get(_gegl_rect(box), 1.0, MASK_U8, Gegl.AbyssPolicy.NONE))

    def read_pixels(self, box, source):
        if source == "visible":
            return self._read_visible(box)
        origin = self.layer_box()
        buffer = self.layer.get_buffer()
        local = box.translate(-origin.x, -origin.y)
        return bytes(buffer.get(_gegl_rect(local), 1.0, RGBA_U8, Gegl.AbyssPolicy.NONE))

    def read_layer_mask(self, box):
        mask = self.layer.get_mask()
        if mask is None or not self.layer.get_apply_mask():
            return None
        origin = self.layer_box()  # a layer mask lies exactly over its layer
        local = box.translate(-origin.x, -origin.y)
        buffer = mask.get_buffer()
        return bytes(buffer.get(_gegl_rect(local), 1.0, MASK_U8, Gegl.AbyssPolicy.NONE))

    def layer_look(self):
        layer = self.layer
        mode = layer.get_mode()
        if mode == Gimp.LayerMode.PASS_THROUGH:  # a group's own mode, which no layer can have
            mode = Gimp.LayerMode.NORMAL
        composite = layer.get_composite_mode()
        if composite in (
            Gimp.LayerCompositeMode.CLIP_TO_LAYER,
            Gimp.LayerCompositeMode.INTERSECTION,
        ):  # the new layer is transparent around its result: there it would erase what is below
            composite = Gimp.LayerCompositeMode.AUTO
        return {
            "opacity": layer.get_opacity(),
            "mode": mode,
            "blend_space": layer.get_blend_space(),
            "composite_space": layer.get_composite_space(),
            "composite_mode": composite,
        }

    def _read_visible(self, box):
        copy = self.image.duplicate()
        try:
            copy.undo_disable()
            merged = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
            if merged is None:
                raise flow.FlowError(flow.NOTHING_VISIBLE)
            x, y = _last(merged.get_offsets(), 2)
            local = box.translate(-x, -y)
            buffer = merged.get_buffer()
            return bytes(buffer.get(_gegl_rect(local), 1.0, RGBA_U8, Gegl.AbyssPolicy.NONE))
        finally:
            copy.delete()

    def _layer_type(self, image):
        if image.get_base_type() == Gimp.ImageBaseType.GRAY:
            return Gimp.ImageType.GRAYA_IMAGE
        return Gimp.ImageType.RGBA_IMAGE

    def _new_layer(self, image, placement, name, look=None):
        """A layer for `placement`, filled and at its offsets but not yet in the image (so no
        lock on a group can stop its pixels being written, and no error leaves it empty)."""
        box = placement.box
        look = look or {}
        layer = Gimp.Layer.new(
            image,
            name,
            box.width,
            box.height,
            self._layer_type(image),
            look.get("opacity", 100.0),
            look.get("mode", Gimp.LayerMode.NORMAL),
        )
        # only what differs: a legacy mode's spaces cannot be set (and stay "auto")
        if look and layer.get_blend_space() != look["blend_space"]:
            layer.set_blend_space(look["blend_space"])
        if look and layer.get_composite_space() != look["composite_space"]:
            layer.set_composite_space(look["composite_space"])
        if look and layer.get_composite_mode() != look["composite_mode"]:
            layer.set_composite_mode(look["composite_mode"])
        layer.set_offsets(box.x, box.y)
        self._fill(layer, placement)
        return layer

    def _fill(self, layer, placement):
        box = placement.box
        buffer = layer.get_buffer()
        buffer.set(Gegl.Rectangle.new(0, 0, box.width, box.height), RGBA_U8, placement.rgba)
        buffer.flush()  # inserting the layer then redraws its area

    def add_layers(self, placements, name, look=None, on_top=False):
        image = self.image
        active = self.layer if self.layer is not None and self.layer.is_valid() else None
        if on_top:
            active = None
        parent = active.get_parent() if active is not None else None
        position = image.get_item_position(active) if active is not None else 0
        layers = [self._new_layer(image, placement, name, look) for placement in placements]
        image.undo_group_start()
        try:
            for layer in layers:
                image.insert_layer(layer, parent, position)
        finally:
            image.undo_group_end()
        if layers:
            image.set_selected_layers(layers[-1:])
        Gimp.displays_flush()
        return layers

    def notice(self, text):
        Gimp.message("Paintbridge: " + text)

    def new_image(self, placements, name):
        first = placements[0].box
        image = Gimp.Image.new(first.width, first.height, Gimp.ImageBaseType.RGB)
        image.undo_disable()
        for placement in placements:
            image.insert_layer(self._new_layer(image, placement, name), None, 0)
        image.undo_enable()
        return image


def settings_from_config(config):
    """paintbridge_gimpflow.Settings from a procedure's config (arguments it lacks keep the
    flow's defaults)."""
    names = {prop.name for prop in config.list_properties()}
    values = {}
    for field in flow.Settings._fields:
        prop = field.replace("_", "-")
        if prop in names:
            values[field] = config.get_property(prop)
    return flow.DEFAULTS._replace(**values)


def _add_common_arguments(procedure):
    procedure.add_string_argument("prompt", "_Prompt", "What to paint", "", READWRITE)
    procedure.add_string_argument(
        "negative-prompt", "_Negative prompt", "What to avoid", "", READWRITE
    )
    procedure.add_string_argument(
        "model",
        "_Model",
        "Model preset or local model; empty = the server's default",
        "",
        READWRITE,
    )
    procedure.add_int_argument(
        "steps", "_Steps", "Denoising steps; 0 = the model's default", 0, 150, 0, READWRITE
    )
    procedure.add_double_argument(
        "guidance",
        "_Guidance",
        "Classifier-free guidance; 0 = the model's default",
        0.0,
        30.0,
        0.0,
        READWRITE,
    )
    procedure.add_int_argument(
        "seed",
        "S_eed",
        "Random seed; -1 = a new one each time",
        -1,
        MAX_FIELD_SEED,
        -1,
        READWRITE,
    )
    procedure.add_string_argument(
        "server-url",
        "Server _URL",
        "A remote paintbridge server (http://host:port); empty = the local one",
        "",
        READWRITE,
    )
    procedure.add_string_argument(
        "token",
        "_Token",
        "The remote server's token (the local one is found by itself); kept for this server "
        "in paintbridge's settings, not in the image: leave it empty after the first time",
        "",
        READWRITE,
    )


def _add_command_arguments(procedure, command):
    if command == "fill":
        choice = Gimp.Choice.new()
        choice.add("layer", 0, "Active layer", "Regenerate from the active layer's pixels")
        choice.add("visible", 1, "Visible image", "Regenerate from what the image shows")
        procedure.add_choice_argument(
            "source", "S_ource", "Which pixels the model sees", choice, "layer", READWRITE
        )
        procedure.add_boolean_argument(
            "whole-layer",
            "_Whole layer without a selection",
            "With nothing selected, regenerate the whole layer instead of stopping",
            False,
            READWRITE,
        )
    elif command == "img2img":
        procedure.add_double_argument(
            "strength",
            "St_rength",
            "How much to change: 0 = nothing, 1 = everything",
            0.0,
            1.0,
            0.75,
            READWRITE,
        )
    elif command == "generate":
        procedure.add_int_argument(
            "width", "_Width", "0 = the image's width", 0, 8192, 0, READWRITE
        )
        procedure.add_int_argument(
            "height", "_Height", "0 = the image's height", 0, 8192, 0, READWRITE
        )


class Progress(object):
    """GIMP's progress bar, and in the interactive run a small window with a Cancel button."""

    def __init__(self, title, interactive):
        self.cancelled = False
        self.window = None
        self.bar = None
        Gimp.progress_init(title)
        if interactive:
            self._open_window(title)

    def _open_window(self, title):
        from gi.repository import Gtk

        window = Gtk.Dialog(title=title, modal=False)
        window.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        window.connect("response", self._on_response)
        window.connect("delete-event", self._on_delete)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_text("waiting for the paintbridge server")
        box = window.get_content_area()
        box.set_border_width(12)
        box.pack_start(self.bar, True, True, 6)
        window.set_default_size(360, -1)
        window.show_all()
        self.window = window
        self._pump()

    def _on_response(self, _dialog, _response):
        self.cancelled = True

    def _on_delete(self, *_args):
        self.cancelled = True
        return True

    def _pump(self):
        if self.window is None:
            return
        from gi.repository import Gtk

        while Gtk.events_pending():
            Gtk.main_iteration_do(False)

    def __call__(self, fraction, text):
        Gimp.progress_update(fraction)
        Gimp.progress_set_text(text)
        if self.bar is not None:
            self.bar.set_fraction(fraction)
            self.bar.set_text(text)
            self._pump()

    def should_cancel(self):
        self._pump()
        return self.cancelled

    def close(self):
        Gimp.progress_end()
        if self.window is not None:
            self.window.destroy()
            self._pump()
            self.window = None


def _ask_whole_layer():
    """Interactive answer to "nothing is selected": True to regenerate the whole layer."""
    from gi.repository import Gtk

    dialog = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION,
        buttons=Gtk.ButtonsType.YES_NO,
        text="Nothing is selected on the active layer.",
    )
    dialog.format_secondary_text(
        "Regenerate the whole layer? (To regenerate part of it, answer No, select that part, "
        "and run Fill Selection again.)"
    )
    answer = dialog.run()
    dialog.destroy()
    return answer == Gtk.ResponseType.YES


class PaintbridgeGimp(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(PROCEDURES)

    def do_set_i18n(self, _name):
        return False

    def do_create_procedure(self, name):
        command, label, blurb = PROCEDURES[name]
        procedure = Gimp.ImageProcedure.new(
            self, name, Gimp.PDBProcType.PLUGIN, self.run_procedure, None
        )
        # every image type: on an indexed image the command says to convert it first
        procedure.set_image_types("*")
        if command == "generate":
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        else:
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(label)
        procedure.add_menu_path(MENU)
        procedure.add_menu_path(LAYERS_MENU)
        procedure.set_documentation(blurb, blurb + " Talks to the paintbridge server.", name)
        procedure.set_attribution("paintbridge", "paintbridge contributors", "2025")
        _add_common_arguments(procedure)
        _add_command_arguments(procedure, command)
        return procedure

    def run_procedure(self, procedure, run_mode, image, drawables, config, _data):
        command, label, _blurb = PROCEDURES[procedure.get_name()]
        title = "Paintbridge: " + label.replace("_", "").rstrip(".")
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        if interactive:
            gi.require_version("GimpUi", "3.0")
            gi.require_version("Gtk", "3.0")
            from gi.repository import GimpUi

            GimpUi.init("paintbridge-gimp")
            dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
            dialog.fill(None)
            accepted = dialog.run()
            dialog.destroy()
            if not accepted:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)

        layers = [d for d in drawables if isinstance(d, Gimp.Layer)]
        if command == "generate" and not layers and image is not None:
            layers = image.get_selected_layers()
        if command != "generate" and not layers:
            return _stopped(procedure, image, interactive, flow.NOT_A_LAYER)
        layer = layers[0] if layers else None
        host = Gimp3Host(image, layer)
        if command != "generate" and len(layers) > 1:
            host.notice(several_layers(layers))
        settings = settings_from_config(config)
        if settings.token:
            # GIMP saves the arguments of a run into the image (a parasite, kept in the .xcf)
            # and into its plug-in settings: not the token (hostkit keeps it, see connect)
            config.set_property("token", "")
        progress = Progress(title, interactive)
        try:
            while True:
                try:
                    made = flow.run_command(
                        command,
                        host,
                        settings,
                        progress=progress,
                        should_cancel=progress.should_cancel,
                    )
                    if interactive and isinstance(made, Gimp.Image):
                        Gimp.Display.new(made)
                    break
                except flow.NoSelection:
                    if not (interactive and command == "fill" and not settings.whole_layer):
                        raise
                    if not _ask_whole_layer():
                        return _stopped(procedure, image, interactive)
                    settings = settings._replace(whole_layer=True)
        except Cancelled as exc:  # said only when the result may be in the server's history
            return _stopped(procedure, image, interactive, _kept(exc))
        except PaintbridgeError as exc:
            return _stopped(procedure, image, interactive, str(exc))
        finally:
            progress.close()
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def _kept(cancelled):
    return str(cancelled) if cancelled.code == RESULT_KEPT else None


def several_layers(layers):
    """The line saying which of several selected layers a command works on: the first."""
    return '%d layers are selected: using "%s", the first.' % (len(layers), layers[0].get_name())


def _stopped(procedure, image, interactive, message=None):
    """The return values of a run that stopped after its dialog was accepted: cancelled
    (message None) or failed. libgimp keeps the dialog's values for the next run only after a
    SUCCESS, so an interactive run shows its message itself and ends as one: the prompt typed
    for a job the server refused, or cancelled to change it, is in the dialog next time. (Not
    when the image was closed meanwhile: libgimp would record the values on it and fail.)"""
    if interactive and (image is None or image.is_valid()):
        if message is not None:
            Gimp.message("Paintbridge: " + message)
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    if message is None:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    # an EXECUTION_ERROR's message is shown by GIMP (and returned to a script)
    return procedure.new_return_values(
        Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error("Paintbridge: " + message)
    )


if __name__ == "__main__":
    Gimp.main(PaintbridgeGimp.__gtype__, sys.argv)
