"""What each job operator sends and what it makes: the settings and selection checked, and a
Plan: the job (protocol v1), the pixel work on its results (results.py, off Blender's thread)
and the `finish` that writes the new datablocks once the job is done. No operator classes here
(operators.py runs the jobs)."""

from collections import namedtuple

import bpy

from . import connection, convert, images, params, props, results
from .hostkit import tasks
from .hostkit.transport import Later


class UserError(Exception):
    """A setting or selection the user must change; the message says what to do."""


# job: what is sent. prepare(results): a list of results.Ready made from the job's list of
# hostkit Result; no bpy (it runs on the job's watch thread in the UI). finish(context, ready):
# the new datablocks made from them, on Blender's thread.
Plan = namedtuple("Plan", ("job", "prepare", "finish"))


# --- what each operator sends and what it makes -------------------------------------------------


def scene_settings(context):
    return context.scene.paintbridge


def session(context):
    return context.window_manager.paintbridge


def server_url(context):
    """The Server URL set in the preferences, "" for the local server."""
    prefs = props.preferences(context)
    return prefs.server_url.strip() if prefs is not None else ""


def client(context, background):
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


def source_image(operator, context):
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


def remember_seed(context, ready):
    for result in ready:
        if result.seed is not None and 0 <= result.seed <= params.MAX_SEED:
            scene_settings(context).last_seed = result.seed


def _as_images(prompt, task, job, colorspace=None, **record):
    """The Plan that makes each result a new image, its parameters (and `record`) kept."""

    def finish(context, ready):
        made = [
            images.new_result_image(
                params.result_name(prompt, task),
                result.png,
                params.record(job, result.seed, **record),
                colorspace,
            )
            for result in ready
        ]
        remember_seed(context, ready)
        return made

    return Plan(job, results.as_png, finish)


def plan_generate(context, seamless):
    """The Plan for txt2img at the settings' size."""
    settings = scene_settings(context)
    prompt = _prompt(settings)
    job = tasks.txt2img_job(
        prompt,
        settings.width,
        settings.height,
        **params.job_parameters(settings.as_dict(), seamless),
    )

    return _as_images(prompt, "txt2img", job)


def _check_whole_image(source, width, height):
    """Refuses an image sent whole that is larger than a server takes, with Blender's way out
    (hostkit's message says to select a smaller area, which Blender's Image Editor has not)."""
    if tasks.too_large(width, height):
        raise UserError(
            '"%s" is %d x %d px; paintbridge works on at most %.1f million pixels (4096 x 4096) '
            "and %d px a side. Work on a scaled-down copy (Image > Resize) and scale the result "
            "back up." % (source.name, width, height, tasks.MAX_PIXELS / 1e6, tasks.MAX_SIDE)
        )


def plan_img2img(context, source):
    settings = scene_settings(context)
    prompt = _prompt(settings)
    read = images.read_source(source, context.scene)
    width, height = read.width, read.height
    _check_whole_image(source, width, height)
    job = tasks.img2img_job(
        read.rgba,  # converted on the job's thread, as it is sent
        width,
        height,
        strength=settings.strength,
        prompt=prompt,
        **params.job_parameters(settings.as_dict(), settings.seamless),
    )
    colorspace = images.result_colorspace(source)
    return _as_images(prompt, "img2img", job, colorspace, source=source.name)


def plan_inpaint(context, source):
    settings = scene_settings(context)
    prompt = _prompt(settings)
    read = images.read_source(source, context.scene)
    width, height, rgba = read.width, read.height, read.rgba  # rgba: made as the job is sent
    mask_image = settings.mask_image
    if mask_image is not None:
        mask_w, mask_h, mask_rgba = images.read_rgba8(mask_image)
        if (mask_w, mask_h) != (width, height):
            raise UserError(
                'The mask "%s" is %d x %d but the image is %d x %d; use a mask of the same size.'
                % (mask_image.name, mask_w, mask_h, width, height)
            )
        mask = convert.luma_mask(mask_rgba)
        strength = settings.strength
    else:
        mask = convert.transparency_mask(read.alpha.get())
        strength = tasks.FILL_STRENGTH  # erased pixels: nothing there to keep
    plan = tasks.plan_fill_selection(mask, width, height, (0, 0, width, height))
    if plan is None:
        raise UserError(
            "Nothing to inpaint: erase part of the image to transparent, or choose a mask image "
            "that is white where the image should change."
        )
    box, box_mask = tuple(plan.box), plan.mask
    if settings.seamless != "none":
        # a crop would be made to tile with its own edges, never with the image's far side
        _check_whole_image(source, width, height)
        box, box_mask = (0, 0, width, height), mask
    job = tasks.inpaint_job(
        Later(lambda: convert.crop(rgba.get(), width, height, box)),
        box_mask,
        box[2],
        box[3],
        prompt=prompt,
        strength=strength,
        **params.job_parameters(settings.as_dict(), settings.seamless),
    )
    source_name, colorspace = source.name, images.result_colorspace(source)
    float_source = images.FloatSource.of(source, read.values)
    mask_name = mask_image.name if mask_image is not None else None

    def prepare(done):  # once the job was sent: rgba is made
        return results.inpainted(done, rgba.get(), width, height, box, box_mask, float_source)

    def finish(context, ready):
        made = []
        for result in ready:
            record = params.record(job, result.seed, source=source_name, mask=mask_name)
            record["box"] = list(box)
            name = params.result_name(prompt, "inpaint")
            if result.values is not None:
                made.append(
                    images.new_float_result(
                        name, width, height, result.values, record, float_source
                    )
                )
            else:
                made.append(images.new_result_image(name, result.png, record, colorspace))
        remember_seed(context, ready)
        return made

    return Plan(job, prepare, finish)


GREASE_PENCIL_TYPES = ("GREASEPENCIL", "GPENCIL")  # Blender 4.3+ (GPv3), and before


def object_shader_editor(space):
    """True for a Shader Editor showing an object's material tree (not World or Line Style)."""
    return (
        getattr(space, "tree_type", "") == "ShaderNodeTree"
        and getattr(space, "shader_type", "") == "OBJECT"
    )


def texture_target_problem(context):
    """Why Generate Texture has nothing to write into here (for its poll), or None. Only what
    the context alone rules out: a material named in `material_name` may still be usable."""
    space = context.space_data
    if getattr(space, "tree_type", "") == "ShaderNodeTree" and not object_shader_editor(space):
        return (
            "Generate Texture writes into an object's material: switch the Shader Editor from "
            "%s to Object" % getattr(space, "shader_type", "?").replace("_", " ").title()
        )
    obj = context.object
    if getattr(context, "material", None) is not None or (
        obj is not None and (obj.active_material is not None or hasattr(obj.data, "materials"))
    ):
        return None
    if len(bpy.data.materials) == 0:
        return "Select an object that can have a material, or open a material"
    return None


def _shaded(material):
    """The material, unless it is a Grease Pencil one: its strokes and fills are drawn from its
    Grease Pencil settings, never from a node tree, so a texture wired there changes nothing."""
    if material.is_grease_pencil:
        raise UserError(
            'The material "%s" is a Grease Pencil material, which does not use shader nodes: '
            "a texture there would change nothing. Generate Texture works on a mesh's (or "
            "curve's) material; select one, or name one in Material." % material.name
        )
    return material


def _target_material(operator, context):
    if operator.material_name:
        material = bpy.data.materials.get(operator.material_name)
        if material is None:
            raise UserError('There is no material named "%s".' % operator.material_name)
        return _editable(_shaded(material), "material"), None
    obj = context.object
    if obj is not None and obj.type in GREASE_PENCIL_TYPES:
        raise UserError(
            'The object "%s" is Grease Pencil, whose strokes do not use shader nodes: a texture '
            "there would change nothing. Select a mesh (or curve) object, or name a material in "
            "Material." % obj.name
        )
    material = getattr(context, "material", None)
    if material is not None:
        return _editable(_shaded(material), "material"), None
    if obj is not None and obj.active_material is not None:
        return _editable(_shaded(obj.active_material), "material"), None
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


def _usable(material):
    """Whether a texture can be wired into `material` and kept: a local, node-based one."""
    return (
        material is not None
        and not material.is_grease_pencil
        and material.library is None
        and material.override_library is None
    )


def _finder(collection_name, datablock):
    """A function that finds `datablock` again later, None once it is gone: by its
    session_uid, which stays the same when it is renamed (or reallocated by undo), then by the
    name it had. The collection is looked up anew on every call: undo replaces Blender's data,
    and a collection kept from before points at freed memory (Blender crashed)."""
    if datablock is None:
        return lambda: None
    uid, name = datablock.session_uid, datablock.name

    def find():
        collection = getattr(bpy.data, collection_name)
        found = next((d for d in collection if d.session_uid == uid), None)
        return found if found is not None else collection.get(name)

    return find


def plan_texture(operator, context):
    material, owner = _target_material(operator, context)
    find_material = _finder("materials", material)
    find_owner = _finder("objects", owner)
    planned = 'material "%s"' % material.name if material else 'object "%s"' % owner.name
    generate = plan_generate(context, scene_settings(context).texture_seamless)

    def finish(context, ready):
        made = generate.finish(context, ready)
        record = made[0][params.RECORD_KEY]
        target, obj = find_material(), find_owner()
        if target is None and obj is None:  # deleted while the job ran: the image is kept
            record["material"] = record["texture_node"] = record["linked_to"] = ""
            record["target_gone"] = planned
            return made
        if target is None and _usable(obj.active_material):
            target = obj.active_material  # the user gave the object one while the job ran
        elif target is None:
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

    return generate._replace(finish=finish)
