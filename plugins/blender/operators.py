"""The operators: Generate, Image to Image, Inpaint, Generate Texture, Cancel, server status.

Each job operator has one synchronous path (`execute`: background mode and scripts, where
Blender's timers never fire) and one modal path (`invoke` in the UI: a timer polls the job,
progress shows in the status bar and the panel, Esc or the panel's Cancel cancels on the server).
Both end in the same `finish`, which writes new datablocks only once the job is done, so an
error or a cancel leaves the .blend as it was. A source image is never written.
"""

import time

import bpy
from bpy.props import StringProperty

from . import connection, convert, images, params, props
from .hostkit import client as hk
from .hostkit import tasks

POLL_SECONDS = 0.2
SERVER_START_SECONDS = 120


class UserError(Exception):
    """A setting or selection the user must change; the message says what to do."""


# --- what each operator sends and what it makes -------------------------------------------------


def _settings(context):
    return context.scene.paintbridge


def _session(context):
    return context.window_manager.paintbridge


def _timer_turn(operator, every):
    """True for a TIMER event at most about once every `every` s. Blender hands every timer's
    events to every modal handler in the window, and an event does not say which timer sent it
    (bpy.types.Event has no `timer`), so an operator paces itself on the clock."""
    now = time.monotonic()
    if now < getattr(operator, "_next_turn", 0.0):
        return False
    operator._next_turn = now + every * 0.9  # a little early, so no tick of its own is skipped
    return True


def _server_url(context):
    """The Server URL set in the preferences, "" for the local server."""
    prefs = props.preferences(context)
    return prefs.server_url.strip() if prefs is not None else ""


def _client(context, background):
    prefs = props.preferences(context)
    online = getattr(bpy.app, "online_access", True)
    if prefs is None:
        return connection.make_client(online_access=online)
    return connection.make_client(
        prefs.server_url,
        prefs.token,
        timeout=prefs.timeout,
        online_access=online,
        autostart=background and prefs.autostart,
    )


def _source_image(operator, context):
    if operator.image_name:
        image = bpy.data.images.get(operator.image_name)
        if image is None:
            raise UserError('There is no image named "%s".' % operator.image_name)
        return image
    image = getattr(context, "edit_image", None)
    space = context.space_data
    if image is None and space is not None and space.type == "IMAGE_EDITOR":
        image = space.image
    if image is None:
        raise UserError("Open an image in the Image Editor first.")
    return image


def _prompt(settings):
    if not settings.prompt.strip():
        raise UserError("Write a prompt first (Image Editor > sidebar > Paintbridge).")
    return settings.prompt


def _show(context, image):
    space = context.space_data
    if space is not None and space.type == "IMAGE_EDITOR":
        space.image = image


def _remember_seed(context, results):
    for result in results:
        if result.seed is not None and 0 <= result.seed <= params.MAX_SEED:
            _settings(context).last_seed = result.seed


def plan_generate(context, seamless):
    """(job, finish) for txt2img at the settings' size."""
    settings = _settings(context)
    prompt = _prompt(settings)
    job = tasks.txt2img_job(
        prompt,
        settings.width,
        settings.height,
        **params.job_parameters(settings.as_dict(), seamless),
    )

    def finish(context, results):
        made = []
        for result in results:
            made.append(
                images.new_result_image(
                    params.result_name(prompt, "txt2img"),
                    result.width,
                    result.height,
                    result.rgba,
                    params.record(job, result.seed),
                )
            )
        _remember_seed(context, results)
        return made

    return job, finish


def plan_img2img(context, source):
    settings = _settings(context)
    prompt = _prompt(settings)
    width, height, rgba = images.read_source(source, context.scene)
    job = tasks.img2img_job(
        rgba,
        width,
        height,
        strength=settings.strength,
        prompt=prompt,
        **params.job_parameters(settings.as_dict(), settings.seamless),
    )
    source_name = source.name

    def finish(context, results):
        made = [
            images.new_result_image(
                params.result_name(prompt, "img2img"),
                r.width,
                r.height,
                r.rgba,
                params.record(job, r.seed, source=source_name),
            )
            for r in results
        ]
        _remember_seed(context, results)
        return made

    return job, finish


def plan_inpaint(context, source):
    settings = _settings(context)
    prompt = _prompt(settings)
    width, height, rgba = images.read_source(source, context.scene)
    mask_image = settings.mask_image
    if mask_image is not None:
        mask_w, mask_h, mask_rgba = images.read_rgba8(mask_image)
        if (mask_w, mask_h) != (width, height):
            raise UserError(
                'The mask "%s" is %d x %d but the image is %d x %d; use a mask of the same size.'
                % (mask_image.name, mask_w, mask_h, width, height)
            )
        mask = convert.luma_mask(mask_rgba)
    else:
        mask = convert.transparency_mask(rgba)
    plan = tasks.plan_fill_selection(mask, width, height, (0, 0, width, height))
    if plan is None:
        raise UserError(
            "Nothing to inpaint: erase part of the image to transparent, or choose a mask image "
            "that is white where the image should change."
        )
    box = tuple(plan.box)
    job = tasks.inpaint_job(
        convert.crop(rgba, width, height, box),
        plan.mask,
        box[2],
        box[3],
        prompt=prompt,
        strength=settings.strength,
        **params.job_parameters(settings.as_dict(), settings.seamless),
    )
    source_name = source.name
    mask_name = mask_image.name if mask_image is not None else None

    def finish(context, results):
        made = []
        placed = tasks.placements(box, results)  # checks every result has the crop's size
        for index, result in enumerate(results):
            region = convert.composite_over(
                convert.crop(rgba, width, height, box), placed[index].rgba, plan.mask
            )
            whole = convert.paste(rgba, width, height, box, region)
            record = params.record(job, result.seed, source=source_name, mask=mask_name)
            record["box"] = list(box)
            made.append(
                images.new_result_image(
                    params.result_name(prompt, "inpaint"), width, height, whole, record
                )
            )
        _remember_seed(context, results)
        return made

    return job, finish


def _target_material(operator, context):
    if operator.material_name:
        material = bpy.data.materials.get(operator.material_name)
        if material is None:
            raise UserError('There is no material named "%s".' % operator.material_name)
        return _editable(material, "material"), None
    material = getattr(context, "material", None)
    if material is not None:
        return _editable(material, "material"), None
    obj = context.object
    if obj is not None and obj.active_material is not None:
        return _editable(obj.active_material, "material"), None
    if obj is not None and obj.data is not None and hasattr(obj.data, "materials"):
        _editable(obj, "object")
        _editable(obj.data, "%s data" % obj.type.lower())
        return None, obj  # a material is made for it once the texture is there
    raise UserError("Select an object that can have a material, or open a material.")


def _editable(datablock, kind):
    """The datablock, when changes to it are saved with this .blend. A linked one (or a library
    override, which keeps only overridden properties, never new nodes or materials) is reloaded
    from its library file on open, so the texture would silently be lost: refused before the
    job runs."""
    if datablock.library is not None:
        why = "is linked from the library file %s" % datablock.library.filepath
    elif datablock.override_library is not None:
        why = "is a library override of a linked one"
    else:
        return datablock
    raise UserError(
        'The %s "%s" %s: what Generate Texture adds to it would be lost when the file is saved. '
        "Make it local first (Object > Relations > Make Local), or generate the texture in the "
        "library file." % (kind, datablock.name, why)
    )


def _finder(collection, datablock):
    """A function that finds `datablock` again later, None once it is gone: by its
    session_uid, which stays the same when it is renamed (or reallocated by undo), then by the
    name it had."""
    if datablock is None:
        return lambda: None
    uid, name = datablock.session_uid, datablock.name

    def find():
        found = next((d for d in collection if d.session_uid == uid), None)
        return found if found is not None else collection.get(name)

    return find


def plan_texture(operator, context):
    material, owner = _target_material(operator, context)
    find_material = _finder(bpy.data.materials, material)
    find_owner = _finder(bpy.data.objects, owner)
    planned = 'material "%s"' % material.name if material else 'object "%s"' % owner.name
    job, make_images = plan_generate(context, _settings(context).texture_seamless)

    def finish(context, results):
        made = make_images(context, results)
        record = made[0][params.RECORD_KEY]
        target, obj = find_material(), find_owner()
        if target is None and obj is None:  # deleted while the job ran: the image is kept
            record["material"] = record["texture_node"] = record["linked_to"] = ""
            record["target_gone"] = planned
            return made
        if target is None:
            target = bpy.data.materials.new(made[0].name)
            if obj.material_slots and obj.active_material is None:
                obj.active_material = target  # fill the empty active slot: its faces use it
            else:
                obj.data.materials.append(target)
        node, socket = images.wire_texture(target, made[0])
        record["material"] = target.name
        record["texture_node"] = node.name
        record["linked_to"] = "%s: %s" % (socket.node.name, socket.name) if socket else ""
        return made

    return job, finish


# --- running a job ------------------------------------------------------------------------------


def _connected(session):
    """The server answered a job: an error kept from before no longer stands beside it."""
    if session.server != "connected":
        session.server, session.server_detail = "connected", ""


class _JobOperator:
    # UNDO without REGISTER: the result is one undo step when the job finishes (Blender pushes
    # it for an UNDO operator, modal or not), but the operator is not "registered", so Repeat
    # Last (Shift+R) and Adjust Last Operation (F9), which take only registered operators, can
    # never re-run it through `execute`, the blocking path that would freeze Blender for the
    # whole job. (A redo panel has nothing to offer here: the settings are in the panel.)
    bl_options = {"UNDO"}

    def plan(self, context):
        raise NotImplementedError

    def _fail(self, context, exc):
        session = _session(context)
        if isinstance(exc, hk.NotRunning):
            session.server, session.server_detail = "not running", str(exc)
        level = {"WARNING"} if isinstance(exc, hk.Cancelled) else {"ERROR"}
        session.message = str(exc)
        self.report(level, str(exc))  # raises RuntimeError in background mode: the caller sees it
        return {"CANCELLED"}

    def summary(self, made):
        """({level}, text): what to report once the job's datablocks are made."""
        return {"INFO"}, "Paintbridge made %s" % ", ".join('"%s"' % i.name for i in made)

    def _done(self, context, made):
        session = _session(context)
        if made:
            _show(context, made[0])
        level, text = self.summary(made)
        _connected(session)
        session.message = text if "WARNING" in level else ""
        self.report(level, text)
        return {"FINISHED"}

    def execute(self, context):
        """The synchronous path: blocks until the job is done (background mode, scripts)."""
        session = _session(context)
        try:
            job, finish = self.plan(context)
            client = _client(context, background=True)

            def progress(step, steps):
                session.progress = step / steps if steps else 0.0

            results = client.run(job, on_progress=progress)
            made = finish(context, results)
        except (UserError, ValueError, hk.PaintbridgeError) as exc:
            return self._fail(context, exc)
        return self._done(context, made)

    def invoke(self, context, event):
        """The interactive path: submit, then poll from a timer in `modal`."""
        if bpy.app.background or context.window is None:
            return self.execute(context)
        session = _session(context)
        if session.running:
            self.report({"WARNING"}, "A Paintbridge job is already running; cancel it first.")
            return {"CANCELLED"}
        try:
            job, self._finish = self.plan(context)
            self._handle = _client(context, background=False).start(job)
        except (UserError, ValueError, hk.PaintbridgeError) as exc:
            return self._fail(context, exc)
        session.running, session.cancel_requested, session.progress = True, False, 0.0
        _connected(session)
        session.message = "Queued"
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        self._status(context, "Paintbridge: queued (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        session = _session(context)
        if event.type == "ESC" or session.cancel_requested:
            try:
                self._handle.cancel()
            except hk.PaintbridgeError:
                pass  # the server went away: nothing more to cancel
            self._cleanup(context)
            return self._fail(context, hk.Cancelled("Cancelled; no image was made."))
        if event.type != "TIMER" or not _timer_turn(self, POLL_SECONDS):
            return {"PASS_THROUGH"}
        try:
            status = self._handle.poll()
        except hk.PaintbridgeError as exc:
            self._cleanup(context)
            return self._fail(context, exc)
        if not status.finished:
            session.progress = status.fraction
            if status.state == "queued":
                text = "queued (%s ahead)" % (status.position or 0)
            else:
                text = "step %d of %d" % (status.step, status.steps)
            session.message = text.capitalize()
            context.window_manager.progress_update(int(status.fraction * 100))
            self._status(context, "Paintbridge: %s (Esc to cancel)" % text)
            return {"PASS_THROUGH"}
        self._cleanup(context)
        try:
            status.raise_for_state()
            made = self._finish(context, status.results or [])
        except (UserError, ValueError, hk.PaintbridgeError) as exc:
            return self._fail(context, exc)
        return self._done(context, made)

    def cancel(self, context):  # Blender ends the modal (file loaded, window closed)
        try:
            self._handle.cancel()
        except hk.PaintbridgeError:
            pass
        self._cleanup(context)

    def _status(self, context, text):
        if context.workspace is not None:
            context.workspace.status_text_set(text)
        _redraw(context)

    def _cleanup(self, context):
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        session = _session(context)
        session.running, session.cancel_requested, session.progress = False, False, 0.0
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _redraw(context)


def _redraw(context):
    screen = context.screen
    if screen is not None:
        for area in screen.areas:
            area.tag_redraw()


class PAINTBRIDGE_OT_generate(_JobOperator, bpy.types.Operator):
    """Generate a new image from the prompt"""

    bl_idname = "paintbridge.generate"
    bl_label = "Generate"

    def plan(self, context):
        return plan_generate(context, _settings(context).seamless)


class PAINTBRIDGE_OT_img2img(_JobOperator, bpy.types.Operator):
    """Make a new image from the open image and the prompt (the open image is not changed)"""

    bl_idname = "paintbridge.img2img"
    bl_label = "Image to Image"

    image_name: StringProperty(name="Image", description="Source image; empty: the open one")

    def plan(self, context):
        return plan_img2img(context, _source_image(self, context))


class PAINTBRIDGE_OT_inpaint(_JobOperator, bpy.types.Operator):
    """Regenerate where the open image is transparent, or where the mask image is white, into a
    new image"""

    bl_idname = "paintbridge.inpaint"
    bl_label = "Inpaint"

    image_name: StringProperty(name="Image", description="Source image; empty: the open one")

    def plan(self, context):
        return plan_inpaint(context, _source_image(self, context))


class PAINTBRIDGE_OT_generate_texture(_JobOperator, bpy.types.Operator):
    """Generate a tileable texture from the prompt into the active material's Base Color (or the
    Color of the shader that feeds its output)"""

    bl_idname = "paintbridge.generate_texture"
    bl_label = "Generate Texture"

    material_name: StringProperty(name="Material", description="Empty: the active material")

    def plan(self, context):
        return plan_texture(self, context)

    def summary(self, made):
        record = made[0][params.RECORD_KEY]
        if record.get("target_gone"):
            return {"WARNING"}, (
                'Paintbridge made "%s" (packed in the .blend), but the %s was deleted while the '
                "job ran, so no material uses it: add it with an Image Texture node."
                % (made[0].name, record["target_gone"])
            )
        if record["linked_to"]:
            return {"INFO"}, 'Paintbridge made "%s" for %s in material "%s"' % (
                made[0].name,
                record["linked_to"],
                record["material"],
            )
        return {"WARNING"}, (
            'Paintbridge made "%s" and put it in material "%s" as the Image Texture node "%s", '
            "not linked: no shader with a Base Color or Color input feeds the Material Output. "
            "Link the node's Color where you want it."
            % (made[0].name, record["material"], record["texture_node"])
        )


class PAINTBRIDGE_OT_cancel(bpy.types.Operator):
    """Cancel the running Paintbridge job"""

    bl_idname = "paintbridge.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        _session(context).cancel_requested = True
        return {"FINISHED"}


def refresh_server_status(context):
    """Asks the server for its health (one short request) and stores the answer for the panel."""
    session = _session(context)
    try:
        health = _client(context, background=False).health()
    except hk.PaintbridgeError as exc:
        if session.server != "starting" or not isinstance(exc, hk.NotRunning):
            session.server = "not running" if isinstance(exc, hk.NotRunning) else "error"
        session.server_detail = str(exc)
        return False
    session.server = "connected"
    session.server_detail = "%s on %s, model %s" % (
        health.get("version", "?"),
        health.get("device", "?"),
        health.get("model") or "not loaded yet",
    )
    return True


class PAINTBRIDGE_OT_server_status(bpy.types.Operator):
    """Check whether the paintbridge server answers"""

    bl_idname = "paintbridge.server_status"
    bl_label = "Check Server"

    def execute(self, context):
        refresh_server_status(context)
        return {"FINISHED"}


class PAINTBRIDGE_OT_start_server(bpy.types.Operator):
    """Start the local paintbridge server (as set up by `paintbridge plugins install`); with a
    Server URL in the preferences, check that server instead"""

    bl_idname = "paintbridge.start_server"
    bl_label = "Start Server"
    # Not REGISTER: Repeat Last would re-run `execute`, which blocks until a server starts
    bl_options = set()

    def execute(self, context):
        session = _session(context)
        if _server_url(context):
            return self._check_named(context)
        try:
            client = connection.make_client(autostart=True)
        except hk.PaintbridgeError as exc:
            session.server, session.server_detail = "not running", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        session.server, session.server_detail = "connected", client.url
        return {"FINISHED"}

    def _check_named(self, context):
        """A server named in the preferences is not this computer's to start: the jobs go to
        it, so only it is asked, and the panel shows its answer."""
        if refresh_server_status(context):
            return {"FINISHED"}
        self.report({"ERROR"}, _session(context).server_detail)
        return {"CANCELLED"}

    def invoke(self, context, event):
        if _server_url(context):
            return self._check_named(context)
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if connection.local_client_if_live() is not None:
            return self.execute(context)
        try:
            self._launch = connection.launch_server()
        except hk.PaintbridgeError as exc:
            _session(context).server_detail = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        _session(context).server = "starting"
        self._give_up_at = time.monotonic() + SERVER_START_SECONDS
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not _timer_turn(self, 0.5):
            return {"PASS_THROUGH"}
        session = _session(context)
        failure = None
        try:
            live = self._launch.check() is not None
        except hk.PaintbridgeError as exc:  # it stopped while starting; the message says why
            live, failure = False, str(exc)
        if live or failure or time.monotonic() > self._give_up_at:
            context.window_manager.event_timer_remove(self._timer)
            if live:
                session.server = "connected"
                refresh_server_status(context)
            else:
                session.server = "not running"
                session.server_detail = failure or (
                    "The server did not start within %d s; see server.log in %s"
                    % (SERVER_START_SECONDS, hk.user_config_dir())
                )
                self.report({"ERROR"}, session.server_detail)
            _redraw(context)
            return {"FINISHED"} if live else {"CANCELLED"}
        return {"PASS_THROUGH"}


CLASSES = (
    PAINTBRIDGE_OT_generate,
    PAINTBRIDGE_OT_img2img,
    PAINTBRIDGE_OT_inpaint,
    PAINTBRIDGE_OT_generate_texture,
    PAINTBRIDGE_OT_cancel,
    PAINTBRIDGE_OT_server_status,
    PAINTBRIDGE_OT_start_server,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
