"""The generation settings the docker edits: plain values, checked before any request.

No Krita and no Qt here, so the rules are tested anywhere.
"""

from .hostkit import tasks

TASKS = ("img2img", "inpaint", "txt2img")
MAX_SEED = 2**32 - 1  # the server's seeds: 0 .. 2**32 - 1


class SettingsError(ValueError):
    """A setting the user must fix; the message says which and how."""


class Params(object):
    """What one generation asks for. `model` "" = the server's default; `steps` 0 = the model's
    default; `seed` -1 = random; `server_url` "" = the local server found through server.json."""

    FIELDS = (
        "prompt",
        "negative_prompt",
        "model",
        "strength",
        "steps",
        "seed",
        "server_url",
        "server_token",
    )

    def __init__(self, **values):
        self.prompt = ""
        self.negative_prompt = ""
        self.model = ""
        self.strength = 0.6
        self.steps = 0
        self.seed = -1
        self.server_url = ""
        self.server_token = ""
        self.update(**values)

    def update(self, **values):
        for key, value in values.items():
            if key not in self.FIELDS:
                raise TypeError("unknown setting %r; known: %s" % (key, ", ".join(self.FIELDS)))
            setattr(self, key, value)
        return self

    def as_dict(self):
        return dict((key, getattr(self, key)) for key in self.FIELDS)

    def check(self, task):
        """Raises SettingsError for a value the server would refuse for `task`."""
        if task not in TASKS:
            raise SettingsError("unknown task %r; one of %s" % (task, ", ".join(TASKS)))
        if not 0 < self.strength <= 1:
            raise SettingsError("Strength must be in (0, 1], got %r." % (self.strength,))
        if self.steps < 0:
            raise SettingsError("Steps must be 0 (model default) or more, got %r." % (self.steps,))
        if task == "img2img" and self.steps and int(self.steps * self.strength) < 1:
            raise SettingsError(
                "Steps x strength must be at least 1 (the model runs int(steps x strength) "
                "steps), got %d x %s: raise steps or strength." % (self.steps, self.strength)
            )
        if not -1 <= self.seed <= MAX_SEED:
            raise SettingsError(
                "Seed must be -1 (random) or 0 to %d, got %r." % (MAX_SEED, self.seed)
            )

    def job_parameters(self, task):
        """The keyword arguments for hostkit.tasks' job builders."""
        self.check(task)
        params = {
            "negative_prompt": self.negative_prompt or None,
            "model": self.model or None,
            "steps": self.steps or None,
            "seed": self.seed if self.seed >= 0 else None,
        }
        if task == "img2img":
            params["strength"] = self.strength
        elif task == "inpaint":  # Fill Selection: the Strength field is Image to Image's
            params["strength"] = tasks.FILL_STRENGTH
        return params

    def wire(self, task):
        """What the job asked for, as kept in the document next to the result layer."""
        params = dict(self.job_parameters(task), task=task, prompt=self.prompt)
        return dict((key, value) for key, value in params.items() if value is not None)


def layer_name(task, prompt, seed=None, index=None):
    """The new layer's name: the task and the prompt (shortened), then the seed."""
    label = {"img2img": "Img2Img", "inpaint": "Fill", "txt2img": "Generate"}[task]
    text = " ".join((prompt or "").split()) or "(no prompt)"
    if len(text) > 48:
        text = text[:47].rstrip() + "\u2026"
    name = "%s: %s" % (label, text)
    if seed is not None:
        name += " (seed %s)" % (seed,)
    if index is not None:
        name += " #%d" % (index + 1,)
    return name
