"""Pure helpers between the add-on's settings and hostkit jobs: seeds, names, and the record of
parameters kept on every result image. No bpy in here (tested inside Blender all the same)."""

import random

from .hostkit.tasks import MAX_FIELD_SEED, random_seed

SEED_MODES = ("RANDOM", "FIXED", "REUSE")
MAX_SEED = MAX_FIELD_SEED  # an IntProperty holds it: the add-on picks its random seeds below it
SEAMLESS = ("none", "x", "y", "xy")
NAME_LIMIT = 63  # bytes in a Blender ID name
RECORD_KEY = "paintbridge"  # the custom property holding the parameters of a result image


def job_seed(mode, seed, last_seed, rng=random):
    """The seed to send: a random one in [0, MAX_SEED] for RANDOM, `seed` for FIXED, the last
    used seed for REUSE (random if nothing was generated yet, last_seed < 0)."""
    if mode == "RANDOM" or (mode == "REUSE" and last_seed < 0):
        return random_seed(rng)
    if mode == "FIXED":
        return int(seed)
    if mode == "REUSE":
        return int(last_seed)
    raise ValueError("seed mode must be one of %s, got %r" % (", ".join(SEED_MODES), mode))


def job_parameters(settings, seamless="none"):
    """The hostkit job keyword arguments from a settings mapping with the keys negative_prompt,
    model, steps, guidance, seed_mode, seed, last_seed. An empty model means the server's
    default, and so do 0 steps and 0 guidance; seamless is one of none/x/y/xy."""
    if seamless not in SEAMLESS:
        raise ValueError("seamless must be one of %s, got %r" % (", ".join(SEAMLESS), seamless))
    params = {
        "negative_prompt": settings.get("negative_prompt") or "",
        "model": (settings.get("model") or "").strip() or None,
        "steps": int(settings["steps"]) or None,
        "guidance": float(settings["guidance"]) or None,
        "seed": job_seed(settings["seed_mode"], settings["seed"], settings["last_seed"]),
    }
    if seamless != "none":
        params["seamless"] = seamless
    return params


def result_name(prompt, task):
    """A name for a result image: the prompt, shortened to fit Blender's 63-byte ID names."""
    text = " ".join((prompt or "").split()) or task
    if len(text.encode("utf-8")) <= NAME_LIMIT:
        return text
    while len((text + "...").encode("utf-8")) > NAME_LIMIT:
        text = text[:-1]
    return text.rstrip() + "..."


def record(job, seed, source=None, mask=None):
    """The parameters that made a result, for the image's custom properties: every job field
    except pixels, the seed the server used, and the names of the source and mask images."""
    out = {}
    for key, value in job.items():
        if key in ("image", "mask") or value is None:
            continue
        out[key] = value
    if seed is not None and 0 <= int(seed) <= MAX_SEED:
        out["seed"] = int(seed)
    elif seed is not None:  # a seed the server chose that a 32-bit property cannot hold
        out["seed"] = str(seed)
    if source:
        out["source_image"] = source
    if mask:
        out["mask_image"] = mask
    return out
