"""The operators: Generate, Image to Image, Inpaint, Generate Texture, Cancel, server status.

Each job operator has one synchronous path (`execute`: background mode and scripts, where
Blender's timers never fire) and one modal path (`invoke` in the UI: a timer polls the job,
progress shows in the status bar and the panel, Esc or the panel's Cancel cancels on the server;
the job is sent, followed and cancelled by hostkit's JobWatch, off Blender's thread).
Both end in the same `finish`, which writes new datablocks only once the job is done, so an
error or a cancel leaves the .blend as it was. A source image is never written.
"""

import time

import bpy
from bpy.props import StringProperty

from . import connection, params, plans
from .hostkit import client as hk

POLL_SECONDS = 0.2
SERVER_START_SECONDS = 120
# The modal operators running now. Blender frees a modal handler without calling its cancel()
# when the operator's class is unregistered (the add-on disabled or updated), so unregister()
# cancels these itself: else the job runs on, and the panel says "running" until a restart.
_LIVE = set()


def _timer_turn(operator, every):
    """True for a TIMER event at most about once every `every` s. Blender hands every timer's
    events to every modal handler in the window, and an event does not say which timer sent it
    (bpy.types.Event has no `timer`), so an operator paces itself on the clock."""
    now = time.monotonic()
    if now < getattr(operator, "_next_turn", 0.0):
        return False
    operator._next_turn = now + every * 0.9  # a little early, so no tick of its own is skipped
    return True


def _esc_is_ours(context):
    """Whether Esc cancels the job: not while it stops playback, which Blender's keymap does
    only if a running modal lets the key through (the panel's Cancel stays)."""
    screen = context.screen
    return screen is None or not screen.is_animation_playing


def _show(context, image):
    space = context.space_data
    if space is not None and space.type == "IMAGE_EDITOR":
        space.image = image


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
        session = plans.session(context)
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
        session = plans.session(context)
        if made:
            _show(context, made[0])
        level, text = self.summary(made)
        _connected(session)
        session.message = text if "WARNING" in level else ""
        self.report(level, text)
        return {"FINISHED"}

    def execute(self, context):
        """The synchronous path: blocks until the job is done (background mode, scripts)."""
        session = plans.session(context)
        try:
            plan = self.plan(context)
            client = plans.client(context, background=True)

            def progress(step, steps):
                session.progress = step / steps if steps else 0.0

            job_id = client.submit(plan.job)
            results = client.wait(job_id, on_progress=progress)
        except (plans.UserError, ValueError, hk.PaintbridgeError) as exc:
            return self._fail(context, exc)
        try:
            made = plan.finish(context, plan.prepare(results))
        except Exception as exc:  # bpy's RuntimeError too: the result is in the history
            return self._fail(context, hk.not_used(exc, job_id))
        return self._done(context, made)

    def invoke(self, context, event):
        """The interactive path: send the job (from a background thread), then poll it from a
        timer in `modal`."""
        if bpy.app.background or context.window is None:
            return self.execute(context)
        session = plans.session(context)
        if session.running:
            self.report({"WARNING"}, "A Paintbridge job is already running; cancel it first.")
            return {"CANCELLED"}
        try:
            self._start(context)
        except (plans.UserError, ValueError, hk.PaintbridgeError) as exc:
            return self._fail(context, exc)
        session.running, session.cancel_requested, session.progress = True, False, 0.0
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        self._show_progress(context, hk.JobStatus({"state": hk.SENDING}))  # modal's polls raise
        return {"RUNNING_MODAL"}

    def _start(self, context):
        """Plans the job and hands it to a JobWatch: sent, followed and its results prepared
        from a background thread, so the timer's polls never wait on it."""
        plan = self.plan(context)
        self._finish = plan.finish
        self._handle = plans.client(context, background=False).watch(plan.job, plan.prepare)
        _LIVE.add(self)

    def modal(self, context, event):
        session = plans.session(context)
        # Esc's press only: its release may be what is left of cancelling a move or a select
        esc = event.type == "ESC" and event.value == "PRESS" and _esc_is_ours(context)
        if esc or session.cancel_requested:
            self._handle.cancel()  # sent by the watch's thread, also after the cleanup's close
            self._cleanup(context)
            return self._fail(context, hk.Cancelled(self._cancelled_text()))
        if event.type != "TIMER" or not _timer_turn(self, POLL_SECONDS):
            return {"PASS_THROUGH"}
        try:
            status = self._handle.poll()  # also raises a result that prepare could not use
        except hk.PaintbridgeError as exc:
            self._cleanup(context)
            return self._fail(context, exc)
        if not status.finished:
            self._show_progress(context, status)
            return {"PASS_THROUGH"}
        self._cleanup(context)
        try:
            status.raise_for_state()
        except hk.PaintbridgeError as exc:
            return self._fail(context, exc)
        try:
            made = self._finish(context, status.results or [])
        except Exception as exc:  # bpy's RuntimeError too: a message, and where the result is
            return self._fail(context, hk.not_used(exc, self._handle.id))
        return self._done(context, made)

    def _cancelled_text(self):
        """What Cancel did: nothing was made, or (the job was done: its result was being
        fetched or readied) nothing was added, and where that result is kept."""
        if not self._handle.server_done:
            return "Cancelled; no image was made."
        return "Cancelled; no image was added. " + hk.kept_in_history(self._handle.id)

    def cancel(self, context):  # Blender ends the modal (file loaded, window closed)
        self._handle.cancel()
        self._cleanup(context)

    def _show_progress(self, context, status):
        session = plans.session(context)
        if status.state != hk.SENDING:
            _connected(session)
        text = hk.status_text(status, self._handle.trouble)
        session.message, session.progress = text, status.fraction
        context.window_manager.progress_update(int(status.fraction * 100))
        self._status(context, "Paintbridge: %s (Esc to cancel)" % (text[0].lower() + text[1:]))

    def _status(self, context, text):
        if context.workspace is not None:
            context.workspace.status_text_set(text)
        _redraw(context)

    def _cleanup(self, context):
        _LIVE.discard(self)
        if getattr(self, "_handle", None) is not None:
            self._handle.close()
        wm = context.window_manager
        if getattr(self, "_timer", None) is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        session = plans.session(context)
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
        return plans.plan_generate(context, plans.scene_settings(context).seamless)


class PAINTBRIDGE_OT_img2img(_JobOperator, bpy.types.Operator):
    """Make a new image from the open image and the prompt (the open image is not changed)"""

    bl_idname = "paintbridge.img2img"
    bl_label = "Image to Image"

    image_name: StringProperty(name="Image", description="Source image; empty: the open one")

    def plan(self, context):
        return plans.plan_img2img(context, plans.source_image(self, context))


class PAINTBRIDGE_OT_inpaint(_JobOperator, bpy.types.Operator):
    """Regenerate where the open image is transparent, or where the mask image is white, into a
    new image"""

    bl_idname = "paintbridge.inpaint"
    bl_label = "Inpaint"

    image_name: StringProperty(name="Image", description="Source image; empty: the open one")

    def plan(self, context):
        return plans.plan_inpaint(context, plans.source_image(self, context))


class PAINTBRIDGE_OT_generate_texture(_JobOperator, bpy.types.Operator):
    """Generate a tileable texture from the prompt into the active material's Base Color (or the
    Color of the shader that feeds its output)"""

    bl_idname = "paintbridge.generate_texture"
    bl_label = "Generate Texture"

    material_name: StringProperty(name="Material", description="Empty: the active material")

    @classmethod
    def poll(cls, context):
        problem = plans.texture_target_problem(context)
        if problem is not None:
            cls.poll_message_set(problem)
        return problem is None

    def plan(self, context):
        return plans.plan_texture(self, context)

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
        plans.session(context).cancel_requested = True
        return {"FINISHED"}


def refresh_server_status(context):
    """Asks the server for its health (one short request) and stores the answer for the panel."""
    session = plans.session(context)
    try:
        health = plans.client(context, background=False).health()
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
        session = plans.session(context)
        if plans.server_url(context):
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
        self.report({"ERROR"}, plans.session(context).server_detail)
        return {"CANCELLED"}

    def invoke(self, context, event):
        if plans.server_url(context):
            return self._check_named(context)
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if connection.local_client_if_live() is not None:
            return self.execute(context)
        try:
            self._launch = connection.launch_server()
        except hk.PaintbridgeError as exc:
            plans.session(context).server_detail = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        plans.session(context).server = "starting"
        self._give_up_at = time.monotonic() + SERVER_START_SECONDS
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        _LIVE.add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not _timer_turn(self, 0.5):
            return {"PASS_THROUGH"}
        session = plans.session(context)
        failure = None
        try:
            live = self._launch.check() is not None
        except hk.PaintbridgeError as exc:  # it stopped while starting; the message says why
            live, failure = False, str(exc)
        if live or failure or time.monotonic() > self._give_up_at:
            self._stop_waiting(context)
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

    def cancel(self, context):  # Blender ends the modal; the server may still come up
        self._stop_waiting(context)
        plans.session(context).server = "unknown"
        _redraw(context)

    def _stop_waiting(self, context):
        _LIVE.discard(self)
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


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
    for operator in list(_LIVE):
        operator.cancel(bpy.context)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
