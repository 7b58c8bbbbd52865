"""Menus and panels: Image Editor > Image menu and sidebar tab "Paintbridge", Shader Editor >
Add menu, and the material properties."""

import bpy

from . import plans
from .operators import (
    PAINTBRIDGE_OT_cancel,
    PAINTBRIDGE_OT_generate,
    PAINTBRIDGE_OT_generate_texture,
    PAINTBRIDGE_OT_img2img,
    PAINTBRIDGE_OT_inpaint,
    PAINTBRIDGE_OT_server_status,
    PAINTBRIDGE_OT_start_server,
)

STATUS_ICONS = {"connected": "CHECKMARK", "starting": "SORTTIME", "not running": "ERROR"}


def draw_image_menu(self, _context):
    layout = self.layout
    layout.separator()
    layout.operator_context = "INVOKE_DEFAULT"
    layout.operator(PAINTBRIDGE_OT_generate.bl_idname, icon="IMAGE_DATA")
    layout.operator(PAINTBRIDGE_OT_img2img.bl_idname, icon="IMAGE")
    layout.operator(PAINTBRIDGE_OT_inpaint.bl_idname, icon="BRUSH_DATA")


def draw_node_add_menu(self, context):
    """Generate Texture in the Shader Editor's Add menu, only where it shows an object's
    material: a World or Line Style tree is not what the operator writes into."""
    if not plans.object_shader_editor(context.space_data):
        return
    layout = self.layout
    layout.separator()
    layout.operator_context = "INVOKE_DEFAULT"
    layout.operator(PAINTBRIDGE_OT_generate_texture.bl_idname, icon="TEXTURE")


def draw_server(layout, context):
    session = context.window_manager.paintbridge
    row = layout.row(align=True)
    row.label(text="Server: %s" % session.server, icon=STATUS_ICONS.get(session.server, "QUESTION"))
    row.operator(PAINTBRIDGE_OT_server_status.bl_idname, text="", icon="FILE_REFRESH")
    if session.server in ("not running", "unknown", "error"):
        layout.operator(PAINTBRIDGE_OT_start_server.bl_idname, icon="PLAY")
    if session.server_detail:
        layout.label(text=session.server_detail)


def draw_job(layout, context):
    session = context.window_manager.paintbridge
    if session.running:
        row = layout.row(align=True)
        row.prop(session, "progress", text=session.message or "Running", slider=True)
        row.operator(PAINTBRIDGE_OT_cancel.bl_idname, text="", icon="CANCEL")
    elif session.message:
        layout.label(text=session.message, icon="INFO")


def draw_settings(layout, settings, texture=False):
    layout.prop(settings, "prompt")
    layout.prop(settings, "negative_prompt")
    layout.prop(settings, "model")
    col = layout.column(align=True)
    col.prop(settings, "width")
    col.prop(settings, "height")
    col = layout.column(align=True)
    col.prop(settings, "steps", text="Steps" if settings.steps else "Steps (model default)")
    col.prop(
        settings, "guidance", text="Guidance" if settings.guidance else "Guidance (model default)"
    )
    if not texture:
        col.prop(settings, "strength")
    row = layout.row(align=True)
    row.prop(settings, "seed_mode", text="Seed")
    sub = row.row(align=True)
    sub.enabled = settings.seed_mode == "FIXED"
    sub.prop(settings, "seed", text="")
    if settings.last_seed >= 0:
        layout.label(text="Last seed: %d" % settings.last_seed)
    layout.prop(settings, "texture_seamless" if texture else "seamless")


class PAINTBRIDGE_PT_image(bpy.types.Panel):
    bl_label = "Paintbridge"
    bl_space_type = "IMAGE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Paintbridge"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.paintbridge
        draw_server(layout, context)
        draw_settings(layout, settings)
        layout.prop(settings, "mask_image")
        running = context.window_manager.paintbridge.running
        col = layout.column(align=True)
        col.enabled = not running
        col.operator_context = "INVOKE_DEFAULT"
        col.operator(PAINTBRIDGE_OT_generate.bl_idname, icon="IMAGE_DATA")
        col.operator(PAINTBRIDGE_OT_img2img.bl_idname, icon="IMAGE")
        col.operator(PAINTBRIDGE_OT_inpaint.bl_idname, icon="BRUSH_DATA")
        draw_job(layout, context)


class PAINTBRIDGE_PT_material(bpy.types.Panel):
    bl_label = "Paintbridge Texture"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "material"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context):
        return context.object is not None

    def draw(self, context):
        layout = self.layout
        draw_server(layout, context)
        draw_settings(layout, context.scene.paintbridge, texture=True)
        row = layout.row()
        row.enabled = not context.window_manager.paintbridge.running
        row.operator_context = "INVOKE_DEFAULT"
        row.operator(PAINTBRIDGE_OT_generate_texture.bl_idname, icon="TEXTURE")
        draw_job(layout, context)


CLASSES = (PAINTBRIDGE_PT_image, PAINTBRIDGE_PT_material)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.IMAGE_MT_image.append(draw_image_menu)
    bpy.types.NODE_MT_add.append(draw_node_add_menu)


def unregister():
    bpy.types.NODE_MT_add.remove(draw_node_add_menu)
    bpy.types.IMAGE_MT_image.remove(draw_image_menu)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
