"""paintbridge for Krita: img2img, Fill Selection and Generate through a paintbridge server.

Bundle layout: pykrita/paintbridge_krita.desktop, pykrita/paintbridge_krita/ (this package) with
hostkit copied inside as paintbridge_krita/hostkit, and paintbridge_krita.action in Krita's
actions folder.
"""

from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

from .docker import DOCKER_ID, PaintbridgeDocker
from .extension import PaintbridgeExtension

_app = Krita.instance()
_app.addExtension(PaintbridgeExtension(_app))
_app.addDockWidgetFactory(
    DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, PaintbridgeDocker)
)
