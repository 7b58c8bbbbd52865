"""Runs inside Krita (`kritarunner -s logic_driver -- CONFIG.json`): the plug-in's controller on
real documents against a real paintbridge server, one scenario after another.

kritarunner always exits 0, so every scenario's verdict goes to the result file named in the
config: {"scenarios": {name: {"ok": bool, "failures": [...], "info": {...}}}, "finished": true}.
Standard library + PyQt5 + krita only (this is Krita's Python).
"""

import json
import sys
import time
import traceback

from pixelcheck import compare_identity, digest, pattern_alpha_bgra, pattern_bgra

SRGB = "sRGB-elle-V2-srgbtrc.icc"  # Krita's default for 8-bit RGB/Alpha
CLAY = "ClayRGB-elle-V2-g22.icc"  # Adobe RGB (1998)-like: wider gamut, gamma 2.2
LINEAR = "sRGB-elle-V2-g10.icc"  # sRGB primaries, linear: Krita's default for 16-bit and float
REC2020 = "Rec2020-elle-V4-g10.icc"


class Scenario:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.info = {}

    def check(self, condition, what):
        if not condition:
            self.failures.append(what)
        return condition


class Driver:
    def __init__(self, config):
        from krita import Krita

        self.config = config
        self.krita = Krita.instance()
        sys.path.insert(0, config["bundle"])
        from paintbridge_krita import controller, params

        self.controller_module = controller
        self.params_module = params

    # helpers -----------------------------------------------------------------------------

    def document(self, width, height, depth="U8", profile=""):
        doc = self.krita.createDocument(
            width, height, "paintbridge-test", "RGBA", depth, profile, 72.0
        )
        root = doc.rootNode()
        source = doc.createNode("source", "paintlayer")
        root.addChildNode(source, None)
        top = doc.createNode("top (empty)", "paintlayer")
        root.addChildNode(top, source)
        return doc, source

    def controller(self, **settings):
        values = {"prompt": "a red door", "steps": 4, "seed": 7, "strength": 0.75}
        values.update(settings)
        params = self.params_module.Params(**values)
        return self.controller_module.Controller(
            params, config_dir=self.config["config_dir"], interval_ms=50
        )

    def wait(self, controller, timeout_s=120):
        from PyQt5.QtCore import QEventLoop, QTimer

        if not controller.busy:
            return True
        loop = QEventLoop()
        controller.busy_changed.connect(lambda busy: None if busy else loop.quit())
        guard = QTimer()
        guard.setSingleShot(True)
        guard.timeout.connect(loop.quit)
        guard.start(timeout_s * 1000)
        loop.exec_()
        return not controller.busy

    def sent_id(self, controller, timeout_s=30):
        """The job's id once the runner's thread has sent it (run() returns before), with
        Krita's events running meanwhile; None when the job ended first."""
        import time

        from PyQt5.QtCore import QEventLoop, QTimer

        deadline = time.time() + timeout_s
        while controller.busy and controller.runner.job_id is None and time.time() < deadline:
            loop = QEventLoop()
            QTimer.singleShot(20, loop.quit)
            loop.exec_()
        return controller.runner.job_id

    def names(self, doc):
        return [node.name() for node in doc.rootNode().childNodes()]

    def bounds(self, node):
        b = node.bounds()
        return [b.x(), b.y(), b.width(), b.height()]

    def projection(self, doc):
        doc.refreshProjection()
        doc.waitForDone()
        return bytes(doc.pixelData(0, 0, doc.width(), doc.height()))

    def run_keeping_the_look(self, s, ctrl, task, doc, source, what, tolerance):
        """Runs `task` (see run_ok); the image must look as before, within `tolerance` levels
        (test:identity). Returns the new layer or None."""
        before = self.projection(doc)
        layer = self.run_ok(s, ctrl, task, doc, source)
        if layer is not None:
            diff = self.differences(before, self.projection(doc))
            s.info[what] = diff
            s.check(diff[1] <= tolerance, f"{what}: the image changed: {diff}")
        return layer

    def run_ok(self, s, controller, task, doc, node):
        started = controller.run(task, doc, node)
        s.check(started, f"the job did not start: {controller.last_error}")
        if not started:
            return None
        s.check(self.wait(controller), "the job did not end in time")
        s.check(controller.last_error is None, f"error: {controller.last_error}")
        nodes = controller.last_nodes
        s.check(bool(nodes), "no new layer")
        return nodes[-1] if nodes else None

    def check_above(self, s, doc, source, layer):
        children = [node.name() for node in doc.rootNode().childNodes()]
        s.info["layers"] = children
        s.check(
            children.index(layer.name()) == children.index(source.name()) + 1,
            f"the new layer is not directly above the source: {children}",
        )

    def check_directly_above(self, s, node, layer):
        """`layer` is the sibling just above `node` (by unique id: result names repeat)."""
        parent = layer.parentNode()
        ids = [child.uniqueId() for child in parent.childNodes()] if parent is not None else []
        where = ids.index(layer.uniqueId()) if layer.uniqueId() in ids else None
        s.check(
            where is not None and where > 0 and ids[where - 1] == node.uniqueId(),
            f"the new layer is not directly above {node.name()!r}",
        )

    def check_recorded(self, s, doc, layer, task):
        from paintbridge_krita.logic import recorded_parameters

        recorded = recorded_parameters(doc).get(layer.uniqueId().toString())
        s.check(
            bool(recorded) and recorded.get("task") == task and recorded.get("prompt"),
            f"parameters not kept in the document: {recorded!r}",
        )

    def check_fill(self, s, doc, source, sel_mask, before_source, before_projection, ctrl):
        """Every pixel outside the selection is unchanged; pixels inside changed."""
        w, h = doc.width(), doc.height()
        layer = self.run_ok(s, ctrl, "inpaint", doc, source)
        if layer is None:
            return None
        self.check_above(s, doc, source, layer)
        s.check(digest(source.pixelData(0, 0, w, h)) == before_source, "the source layer changed")
        after = self.projection(doc)
        new = bytes(layer.pixelData(0, 0, w, h))
        outside_changed = inside = inside_changed = visible_outside = 0
        for i in range(w * h):
            p = slice(i * 4, i * 4 + 4)
            if sel_mask[i] == 0:
                outside_changed += after[p] != before_projection[p]
                visible_outside += new[i * 4 + 3] != 0
            elif sel_mask[i] == 255:
                inside += 1
                inside_changed += after[p] != before_projection[p]
        s.info.update(
            outside_changed=outside_changed,
            new_layer_alpha_outside=visible_outside,
            inside=inside,
            inside_changed=inside_changed,
        )
        s.check(outside_changed == 0, f"{outside_changed} pixels outside the selection changed")
        s.check(visible_outside == 0, f"the new layer has {visible_outside} pixels outside")
        s.check(inside_changed > inside // 2, f"only {inside_changed} of {inside} inside changed")
        self.check_recorded(s, doc, layer, "inpaint")
        return layer

    # scenarios ---------------------------------------------------------------------------

    def scenario_img2img_layer(self, s):
        """img2img of a layer whose pixels cover part of the canvas: a new layer of the layer's
        size at its offset, directly above it; the source untouched."""
        w, h, rect = 96, 80, (16, 8, 48, 40)
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, rect), 0, 0, w, h)
        bounds = source.bounds()
        s.info["source_bounds"] = [bounds.x(), bounds.y(), bounds.width(), bounds.height()]
        before = digest(source.pixelData(0, 0, w, h))
        ctrl = self.controller()
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            nb = layer.bounds()
            s.info["new_bounds"] = [nb.x(), nb.y(), nb.width(), nb.height()]
            s.check(
                s.info["new_bounds"] == list(rect),
                "new layer bounds {!r}".format(s.info["new_bounds"]),
            )
            s.check(layer.type() == "paintlayer", f"new node is a {layer.type()}")
            self.check_above(s, doc, source, layer)
            s.check(digest(source.pixelData(0, 0, w, h)) == before, "the source layer changed")
            src = bytes(source.pixelData(*rect))
            new = bytes(layer.pixelData(*rect))
            s.check(src != new, "the new layer is a copy of the source")
            s.check(layer.name().startswith("Img2Img: a red door"), f"name {layer.name()!r}")
            self.check_recorded(s, doc, layer, "img2img")
        doc.close()

    def scenario_img2img_selection(self, s):
        """img2img with a selection: only the selection's box is sent and replaced."""
        from krita import Selection

        w, h = 128, 96
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
        sel = Selection()
        sel.select(40, 24, 32, 24, 255)
        doc.setSelection(sel)
        layer = self.run_ok(s, self.controller(), "img2img", doc, source)
        if layer is not None:
            nb = layer.bounds()
            s.info["new_bounds"] = [nb.x(), nb.y(), nb.width(), nb.height()]
            s.check(
                s.info["new_bounds"] == [40, 24, 32, 24], "bounds {!r}".format(s.info["new_bounds"])
            )
        doc.close()

    def scenario_results_prepared_off_gui_thread(self, s):
        """A layer's pixel work before the job is sent (byte order) and a result's (placement,
        selection, byte order) run on the job's watch thread, not Krita's; what the result's
        raises ends the job with a message that says where the result is kept, and no layer.
        Cancel while it runs: cancelled, no layer."""
        import threading

        from paintbridge_krita import controller as controller_module
        from PyQt5.QtCore import QEventLoop, QTimer

        doc, source = self.document(64, 48)
        source.setPixelData(pattern_bgra(64, 48), 0, 0, 64, 48)
        prepare = controller_module.prepare_results
        threads = []

        def recording(plan, results):
            threads.append(threading.current_thread())
            return prepare(plan, results)

        def unplaceable(plan, results):
            raise ValueError("the result is 8 x 8, not 64 x 48")

        preparing, may_end = threading.Event(), threading.Event()

        def slow(plan, results):
            preparing.set()
            may_end.wait(30)
            return prepare(plan, results)

        def slow_and_unplaceable(plan, results):
            slow(plan, results)
            unplaceable(plan, results)

        def slow_and_wrong_size(plan, results):  # a PaintbridgeError (hostkit's ServerFault)
            slow(plan, results)
            from paintbridge_krita.hostkit.errors import ServerFault

            raise ServerFault("The server sent a 8x8 result for a 64x48 image.")

        from paintbridge_krita import logic

        swap = logic.pixels.bgra_to_rgba
        swapped = []

        def swap_recorded(data):
            swapped.append(threading.current_thread())
            return swap(data)

        controller_module.prepare_results = recording
        logic.pixels.bgra_to_rgba = swap_recorded
        try:
            layer = self.run_ok(s, self.controller(), "img2img", doc, source)
            logic.pixels.bgra_to_rgba = swap
            controller_module.prepare_results = unplaceable
            words = ["could not use its result", "not 64 x 48", "history export"]
            self._expect_error(s, self.controller(), "img2img", doc, source, words, sent=True)
            # Cancel while the result is prepared: cancelled, whether it then succeeds or fails
            for kind, made in (
                ("placeable", slow),
                ("unplaceable", slow_and_unplaceable),
                ("wrong_size", slow_and_wrong_size),
            ):
                controller_module.prepare_results = made
                preparing.clear()
                may_end.clear()
                ctrl, count = self.controller(), len(self.names(doc))
                ends = []
                ctrl.runner.cancelled.connect(ends.append)
                s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
                deadline = time.time() + 60
                while not preparing.is_set() and time.time() < deadline:
                    loop = QEventLoop()
                    QTimer.singleShot(20, loop.quit)
                    loop.exec_()
                ctrl.cancel()
                may_end.set()
                s.check(self.wait(ctrl), f"{kind}: the job did not end")
                s.info[f"cancelled_while_prepared_{kind}"] = ends
                s.check(len(ends) == 1 and "history export" in ends[0], f"{kind}: ended {ends}")
                s.check(len(self.names(doc)) == count, f"{kind}: a layer was added after Cancel")
        finally:
            controller_module.prepare_results = prepare
            logic.pixels.bgra_to_rgba = swap
            may_end.set()
        # the layer's bytes read on Krita's thread were put in R, G, B, A order on the job's
        s.info["swap_threads"] = [thread.name for thread in swapped]
        s.check(len(swapped) == 1, f"swapped on {swapped}")
        s.check(swapped[0] is not threading.main_thread(), "swapped on Krita's GUI thread")
        s.info["prepare_threads"] = [thread.name for thread in threads]
        s.check(layer is not None and len(threads) == 1, f"prepared on {threads}")
        s.check(threads[0] is not threading.main_thread(), "prepared on Krita's GUI thread")
        doc.close()

    def _fill_document(self, w, h, selects):
        from krita import Selection

        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
        sel = Selection()
        for x, y, sw, sh, value in selects:
            part = Selection()
            part.select(x, y, sw, sh, value)
            sel.add(part)
        doc.setSelection(sel)
        mask = bytes(doc.selection().pixelData(0, 0, w, h))
        return doc, source, mask

    def scenario_fill_selection(self, s):
        """Fill Selection in the middle of a larger canvas, with a partly selected strip:
        only the context box is sent; every pixel outside the selection stays as it was."""
        w, h = 256, 192
        doc, source, mask = self._fill_document(
            w, h, [(100, 70, 40, 30, 255), (140, 70, 10, 30, 128)]
        )
        s.info["partial_pixels"] = sum(1 for v in mask if 0 < v < 255)
        before_source = digest(source.pixelData(0, 0, w, h))
        before = self.projection(doc)
        ctrl = self.controller()
        from paintbridge_krita.logic import plan_fill

        plan = plan_fill(doc, source, ctrl.params)
        box = plan.box
        s.info["sent_box"] = list(box)
        s.check(box.width < w and box.height < h, f"the whole canvas was sent: {box!r}")
        # the selection is regenerated, whatever Image to Image's Strength field says
        s.check(ctrl.params.strength != 1.0, "the docker's strength is 1 already")
        s.check(plan.job["strength"] == 1.0, f"filled at strength {plan.job.get('strength')}")
        from paintbridge_krita.logic import _selection

        read_mask, read_box, _bounds = _selection(doc)
        s.info["mask_read"] = list(read_box)
        s.check(
            list(read_box) == [100, 70, 50, 30] and len(read_mask) == 50 * 30,
            f"read the mask of {read_box!r}, not only the selection's box",
        )
        self.check_fill(s, doc, source, mask, before_source, before, ctrl)
        doc.close()

    def scenario_fill_corner(self, s):
        """A selection reaching past the bottom-right corner of the canvas."""
        w, h = 128, 96
        doc, source, mask = self._fill_document(w, h, [(100, 70, 60, 60, 255)])
        before_source = digest(source.pixelData(0, 0, w, h))
        before = self.projection(doc)
        ctrl = self.controller()
        from paintbridge_krita.logic import plan_fill

        box = plan_fill(doc, source, ctrl.params).box
        s.info["sent_box"] = list(box)
        s.check(box.x >= 0 and box.y >= 0 and box.right == w and box.bottom == h, f"box {box!r}")
        self.check_fill(s, doc, source, mask, before_source, before, ctrl)
        doc.close()

    def scenario_identity_img2img(self, s):
        """img2img with test:identity on a layer at an offset with partly transparent pixels: the
        new layer has the source's pixels back, in BGRA, row for row, at the same offset."""
        w, h, rect = 128, 96, (24, 16, 64, 64)  # 64x64: the identity model's own size
        doc, source = self.document(w, h)
        data = pattern_alpha_bgra(w, h, rect)
        source.setPixelData(data, 0, 0, w, h)
        before = digest(source.pixelData(0, 0, w, h))
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            nb = layer.bounds()
            s.info["new_bounds"] = [nb.x(), nb.y(), nb.width(), nb.height()]
            s.check(s.info["new_bounds"] == list(rect), f"bounds {s.info['new_bounds']}")
            src = bytes(source.pixelData(*rect))
            s.info["partial_pixels"] = sum(1 for a in src[3::4] if 0 < a < 255)
            s.check(s.info["partial_pixels"] > 1000, "too few partly transparent pixels")
            diff = compare_identity(src, bytes(layer.pixelData(*rect)))
            s.info["differences"] = diff
            s.check(
                not (diff["alpha"] or diff["opaque"] or diff["partial"]), f"pixels differ: {diff}"
            )
            s.check(digest(source.pixelData(0, 0, w, h)) == before, "the source layer changed")
            self.check_above(s, doc, source, layer)
        doc.close()

    def scenario_identity_fill(self, s):
        """Fill Selection with test:identity at the bottom-right corner: the crop comes back at
        its offset with the source's colours; alpha 0 outside the selection, 255 deep inside;
        the image looks exactly as before."""
        w, h = 160, 112
        doc, source, mask = self._fill_document(w, h, [(128, 80, 32, 32, 255)])
        before_source = digest(source.pixelData(0, 0, w, h))
        before = self.projection(doc)
        ctrl = self.controller(model="test:identity", steps=2)
        from paintbridge_krita.logic import plan_fill

        box = (96, 48, 64, 64)  # the context box: 32 px of context, clipped by the canvas
        s.info["sent_box"] = list(plan_fill(doc, source, ctrl.params).box)
        s.check(s.info["sent_box"] == list(box), f"sent {s.info['sent_box']}")
        layer = self.run_ok(s, ctrl, "inpaint", doc, source)
        if layer is not None:
            src = bytes(source.pixelData(*box))
            new = bytes(layer.pixelData(*box))
            colour = alpha_outside = alpha_inside = 0
            for i in range(box[2] * box[3]):
                x, y = box[0] + i % box[2], box[1] + i // box[2]
                selected = mask[y * w + x]
                a = new[i * 4 + 3]
                if a and new[i * 4 : i * 4 + 3] != src[i * 4 : i * 4 + 3]:
                    colour += 1
                if not selected:
                    alpha_outside += a != 0
                elif x >= 138 and y >= 90:  # past the blend ramp (8 px); the canvas edge has none
                    alpha_inside += a != 255
            nb = layer.bounds()
            s.info["new_bounds"] = [nb.x(), nb.y(), nb.width(), nb.height()]
            s.info.update(colour=colour, alpha_outside=alpha_outside, alpha_inside=alpha_inside)
            s.check(s.info["new_bounds"] == [128, 80, 32, 32], f"bounds {s.info['new_bounds']}")
            s.check(colour == 0, f"{colour} pixels of the new layer differ from the source")
            s.check(alpha_outside == 0, f"{alpha_outside} pixels outside the selection show")
            s.check(alpha_inside == 0, f"{alpha_inside} pixels deep inside are not opaque")
            s.check(self.projection(doc) == before, "the image changed")
            s.check(digest(source.pixelData(0, 0, w, h)) == before_source, "the source changed")
        doc.close()

    def layered_document(self, w, h):
        """A document of `w` x `h` with an opaque, patterned layer "below" under the source
        (opaque pattern_bgra), so that opacity and blending modes show in the projection."""
        doc, source = self.document(w, h)
        below = doc.createNode("below", "paintlayer")
        root = doc.rootNode()
        root.addChildNode(below, root.childNodes()[0])  # above the background, under the source
        order = self.names(doc)
        if order.index("below") + 1 != order.index("source"):
            raise RuntimeError(f"the layers are {order}")
        below.setPixelData(
            bytes(
                b
                for i in range(w * h)
                for b in ((i // w * 9) % 256, 200, (i % w * 2 + 30) % 256, 255)
            ),
            0, 0, w, h,
        )  # fmt: skip
        source.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
        return doc, source

    def stands_in(self, s, doc, source, layer, before, what):
        """With the source hidden, the image looks as `before` (with the source shown) wherever
        the new layer is opaque: an identity result stands in for its source. Returns how many
        pixels were compared."""
        w, h = doc.width(), doc.height()
        new = bytes(layer.pixelData(0, 0, w, h))
        source.setVisible(False)
        after = self.projection(doc)
        source.setVisible(True)
        opaque = differ = 0
        first = []
        for i in range(w * h):
            if new[i * 4 + 3] == 255:
                opaque += 1
                if after[i * 4 : i * 4 + 4] != before[i * 4 : i * 4 + 4]:
                    differ += 1
                    if len(first) < 2:
                        first.append(
                            [i, list(before[i * 4 : i * 4 + 4]), list(after[i * 4 : i * 4 + 4])]
                        )
        s.info[what] = {
            "source": [source.opacity(), source.blendingMode()],
            "new": [layer.opacity(), layer.blendingMode()],
            "opaque": opaque,
            "differ": differ,
            "first": first,
        }  # fmt: skip
        s.check(
            differ == 0,
            f"{what}: {differ} of {opaque} pixels look different with the new layer standing in "
            f"for the source: {s.info[what]}",
        )
        return opaque

    def scenario_identity_keeps_look(self, s):
        """Image to Image and Fill Selection with test:identity on a layer at 40% opacity, and on
        one in Multiply mode: the new layer gets the source's opacity and blending mode, so that
        it shows as the source did (hide the source: the image looks as before). It was 100%
        Normal, which changed the picture. Generate keeps Krita's defaults."""
        from krita import Selection

        w = h = 64  # the identity model's own size
        looks = {"opacity 40%": lambda node: node.setOpacity(102),
                 "multiply": lambda node: node.setBlendingMode("multiply"),
                 "inherit alpha": lambda node: node.setInheritAlpha(True)}  # fmt: skip
        for label, setup in looks.items():
            for task in ("img2img", "inpaint"):
                what = f"{task}, {label}"
                doc, source = self.layered_document(w, h)
                setup(source)
                if task == "inpaint":
                    sel = Selection()
                    sel.select(16, 16, 32, 32, 255)
                    doc.setSelection(sel)
                before = self.projection(doc)
                ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
                layer = self.run_ok(s, ctrl, task, doc, source)
                if layer is not None:
                    opaque = self.stands_in(s, doc, source, layer, before, what)
                    least = w * h if task == "img2img" else 16 * 16
                    s.check(opaque >= least, f"{what}: only {opaque} opaque pixels")
                    clipped = [layer.inheritAlpha(), source.inheritAlpha()]
                    s.check(clipped[0] == clipped[1], f"{what}: inherit alpha {clipped}")
                doc.setModified(False)
                doc.close()
        doc, source = self.layered_document(w, h)
        source.setOpacity(102)
        source.setBlendingMode("multiply")
        layer = self.run_ok(s, self.controller(), "txt2img", doc, source)
        if layer is not None:
            s.info["txt2img"] = [layer.opacity(), layer.blendingMode()]
            s.check(s.info["txt2img"] == [255, "normal"], f"txt2img: {s.info['txt2img']}")
        doc.setModified(False)
        doc.close()

    def masked_document(self, w, h, shown):
        """A layered_document whose source has a transparency mask that shows it only where
        `shown(x, y)`, at 60% opacity. Krita 5.1's API cannot make a transparency mask with
        pixels (createNode gives one without a selection), so a selection mask is saved in a
        .kra, turned into a transparency mask there, and the file opened."""
        import os
        import zipfile

        from krita import Selection

        doc, source = self.layered_document(w, h)
        source.setOpacity(153)
        mask = doc.createSelectionMask("hide")
        selection = Selection()
        selection.setPixelData(
            bytes(255 if shown(i % w, i // w) else 0 for i in range(w * h)), 0, 0, w, h
        )
        mask.setSelection(selection)
        source.addChildNode(mask, None)
        folder = os.path.dirname(self.config["out"])
        saved, masked = os.path.join(folder, "selmask.kra"), os.path.join(folder, "tmask.kra")
        doc.setBatchmode(True)
        ok = doc.saveAs(saved)
        doc.setModified(False)
        doc.close()
        if not ok:
            raise RuntimeError("could not save " + saved)
        with zipfile.ZipFile(saved) as old, zipfile.ZipFile(masked, "w") as new:
            for item in old.infolist():
                data = old.read(item.filename)
                if item.filename == "maindoc.xml":
                    data = data.replace(b'nodetype="selectionmask"', b'nodetype="transparencymask"')
                new.writestr(item, data)
        doc = self.krita.openDocument(masked)
        source = [node for node in doc.rootNode().childNodes() if node.name() == "source"][0]
        kinds = [child.type() for child in source.childNodes()]
        if kinds != ["transparencymask"]:
            raise RuntimeError(f"the source's masks are {kinds}, not one transparency mask")
        return doc, source

    def scenario_identity_masked_layer(self, s):
        """Image to Image with test:identity on a paint layer (at 60%) whose transparency mask
        hides part of it, and on one with an invert filter mask: what the layer shows is sent
        (its projection, its opacity left to the new layer), so nothing the mask hides comes
        back and the new layer stands in for the source. It read pixelData, which ignores masks:
        the masked-out pixels showed on the new layer."""
        w = h = 64

        def shown(x, y):
            return x < 40 and not 20 <= y < 30

        doc, source = self.masked_document(w, h, shown)
        before = self.projection(doc)
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            new = bytes(layer.pixelData(0, 0, w, h))
            revealed = sum(
                1 for i in range(w * h) if not shown(i % w, i // w) and new[i * 4 + 3] != 0
            )
            s.info["revealed"] = revealed
            s.check(revealed == 0, f"{revealed} pixels the mask hides show on the new layer")
            opaque = self.stands_in(s, doc, source, layer, before, "transparency mask")
            s.check(opaque == sum(shown(i % w, i // w) for i in range(w * h)), f"{opaque} opaque")
        doc.setModified(False)
        doc.close()
        doc, source = self.layered_document(w, h)
        source.addChildNode(
            doc.createFilterMask("invert", self.krita.filter("invert"), source), None
        )
        before = self.projection(doc)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            opaque = self.stands_in(s, doc, source, layer, before, "filter mask")
            s.check(opaque == w * h, f"filter mask: {opaque} opaque pixels")
        doc.setModified(False)
        doc.close()

    def scenario_generate(self, s):
        """Generate with no selection: a canvas-sized layer above the active one."""
        w, h = 96, 64
        doc, source = self.document(w, h)
        layer = self.run_ok(s, self.controller(), "txt2img", doc, source)
        if layer is not None:
            nb = layer.bounds()
            s.info["new_bounds"] = [nb.x(), nb.y(), nb.width(), nb.height()]
            s.check(
                s.info["new_bounds"] == [0, 0, w, h], "bounds {!r}".format(s.info["new_bounds"])
            )
            self.check_above(s, doc, source, layer)
            self.check_recorded(s, doc, layer, "txt2img")
        doc.close()

    def scenario_busy_while_placing(self, s):
        """While the result is being placed the job still counts as running: a second run is
        refused, and busy turns False only after the layer is there."""
        doc, source = self.document(64, 64)
        ctrl = self.controller()
        seen = {}
        place = ctrl._place

        def placing(plan, results):
            seen["busy"] = ctrl.busy
            seen["second_started"] = ctrl.run("txt2img", doc, source)
            seen["second_error"] = ctrl.last_error
            ctrl.last_error = None
            return place(plan, results)

        ctrl._place = placing
        before = len(self.names(doc))
        ends = []
        ctrl.busy_changed.connect(lambda busy: ends.append(len(self.names(doc))) if not busy else 0)
        layer = self.run_ok(s, ctrl, "txt2img", doc, source)
        if ctrl.busy:  # the second job did start: end it so the run goes on
            ctrl.cancel()
            self.wait(ctrl, 30)
        s.info.update(seen, layers_when_idle=ends)
        s.check(seen.get("busy") is True, "not busy while placing the result")
        s.check(seen.get("second_started") is False, "a second job started during placement")
        s.check("already running" in (seen.get("second_error") or ""), "no 'already running'")
        s.check(layer is not None and ends == [before + 1], f"busy ended with {ends} layers")
        doc.close()

    def _expect_error(self, s, ctrl, task, doc, node, words, sent=False):
        """`sent`: the error comes from sending the job, after run() returned."""
        count = len(self.names(doc))
        started = ctrl.run(task, doc, node)
        s.check(started == sent, "a job started" if started else "no job started")
        self.wait(ctrl)
        s.info["error"] = ctrl.last_error
        s.check(bool(ctrl.last_error), "no error message")
        for word in words:
            s.check(word in (ctrl.last_error or ""), f"the message lacks {word!r}")
        s.check(len(self.names(doc)) == count, f"a layer was added: {self.names(doc)}")

    def scenario_server_down(self, s):
        """A server URL where nothing listens: a clean error, no new layer."""
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller(server_url=self.config["dead_url"], server_token="x")
        words = ["Could not reach", "paintbridge serve"]
        self._expect_error(s, ctrl, "img2img", doc, source, words, sent=True)
        doc.close()

    def scenario_no_server_file(self, s):
        """No server.json (no local server started): a clean error that says what to run."""
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller()
        ctrl.config_dir = self.config["empty_config_dir"]
        self._expect_error(s, ctrl, "txt2img", doc, source, ["paintbridge serve"])
        doc.close()

    def scenario_start_server(self, s):
        """Start Server: returns at once (hostkit.launch_server), a job meanwhile is refused,
        then the QTimer finds the server; a second start finds it running and starts nothing."""
        import time

        from PyQt5.QtCore import QEventLoop, QTimer

        ctrl = self.controller()
        ctrl.config_dir = self.config["launch_config_dir"]
        ready, messages = [], []
        ctrl.starter.ready.connect(ready.append)
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        began = time.time()
        started = ctrl.start_server()
        s.info["start_server_s"] = round(time.time() - began, 3)
        s.check(started, f"did not start: {ctrl.last_error}")
        s.check(time.time() - began < 1.0, "start_server blocked the GUI thread")
        launch = ctrl.starter.launch
        s.check(ctrl.starting and launch is not None, "not starting")
        try:
            doc, source = self.document(64, 64)
            self._expect_error(s, ctrl, "txt2img", doc, source, ["still starting"])
            doc.close()
            if ctrl.starting:
                loop = QEventLoop()
                ctrl.starting_changed.connect(lambda busy: None if busy else loop.quit())
                guard = QTimer()
                guard.setSingleShot(True)
                guard.timeout.connect(loop.quit)
                guard.start(60 * 1000)
                loop.exec_()
            s.info["ready_s"] = round(time.time() - began, 3)
            s.info["messages"] = messages
            s.check(not ctrl.starting, "still starting after 60 s")
            s.check(len(ready) == 1 and ready[0].is_live(), f"not ready: {ctrl.last_error}")
            s.check("running at" in messages[-1][1], f"last message {messages[-1]}")
            s.check(ctrl.start_server() and not ctrl.starting, "a second start did not see it")
            s.check("already running" in messages[-1][1] or "running at" in messages[-1][1],
                    f"last message {messages[-1]}")  # fmt: skip
        finally:
            if launch is not None:
                launch.process.terminate()
                launch.process.wait(30)

    def scenario_default_16bit(self, s):
        """A new 16-bit image (Krita gives it a linear profile) works as it is (it was refused,
        with a message to convert it to 8-bit sRGB): Image to Image gives a 16-bit layer."""
        from paintbridge_krita.logic import convert_bgra

        doc, source = self.document(64, 64, "U16")
        s.info["profile"] = doc.colorProfile()
        data = convert_bgra(pattern_bgra(64, 64), 64, 64, ("U8", SRGB), ("U16", LINEAR))
        source.setPixelData(data, 0, 0, 64, 64)  # 8 bytes a pixel
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            s.info["layer"] = [layer.colorDepth(), layer.colorProfile()]
            s.check(layer.colorDepth() == "U16", f"the new layer is {layer.colorDepth()}")
        doc.setModified(False)
        doc.close()

    def srgb_projection(self, doc):
        """The image as 8-bit sRGB BGRA, whatever its depth and profile (converted by Krita)."""
        from paintbridge_krita.logic import SRGB8, convert_bgra

        space = (doc.colorDepth(), doc.colorProfile())
        return convert_bgra(self.projection(doc), doc.width(), doc.height(), space, SRGB8)

    def scenario_identity_high_depth(self, s):
        """RGB/Alpha images at 16-bit integer, 16-bit float and 32-bit float, in sRGB and in
        linear sRGB (Krita's default for them), Image to Image and Fill Selection (32x32) with
        test:identity: the new layer is at the image's depth and profile, the image looks as
        before within 8-bit rounding (both as 8-bit sRGB), the source is untouched and the
        result shows nothing outside the selection. These images were refused."""
        from krita import Selection
        from paintbridge_krita.logic import SRGB8, convert_bgra

        w = h = 64  # the identity model's own size
        rect = (16, 16, 32, 32)
        for depth in ("U16", "F16", "F32"):
            for profile in (SRGB, LINEAR):
                for task in ("img2img", "inpaint"):
                    what = f"{task}, {depth}, {profile}"
                    doc, source = self.document(w, h, depth, profile)
                    space = (doc.colorDepth(), doc.colorProfile())
                    if not s.check(space == (depth, profile), f"{what}: the image is {space}"):
                        doc.close()
                        continue
                    data = convert_bgra(pattern_bgra(w, h), w, h, SRGB8, space)
                    source.setPixelData(data, 0, 0, w, h)
                    before_source = digest(source.pixelData(0, 0, w, h))
                    if task == "inpaint":
                        sel = Selection()
                        sel.select(*rect, 255)
                        doc.setSelection(sel)
                    before = self.srgb_projection(doc)
                    ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
                    layer = self.run_ok(s, ctrl, task, doc, source)
                    if layer is not None:
                        got = (layer.colorDepth(), layer.colorProfile())
                        s.check(got == space, f"{what}: the new layer is {got}")
                        diff = self.differences(before, self.srgb_projection(doc))
                        s.info[what] = diff
                        s.check(diff[1] <= 2, f"{what}: the image changed: {diff}")
                        same = digest(source.pixelData(0, 0, w, h)) == before_source
                        s.check(same, f"{what}: the source changed")
                        new = bytes(layer.pixelData(0, 0, w, h))
                        new = convert_bgra(new, w, h, got, SRGB8)
                        x0, y0, rw, rh = rect if task == "inpaint" else (0, 0, w, h)
                        outside = sum(
                            1
                            for i, a in enumerate(new[3::4])
                            if a and not (x0 <= i % w < x0 + rw and y0 <= i // w < y0 + rh)
                        )
                        s.check(outside == 0, f"{what}: {outside} pixels show outside")
                    doc.setModified(False)
                    doc.close()

    def scenario_generate_high_depth(self, s):
        """Generate in 16-bit integer, 16-bit float and 32-bit float images (linear, Krita's
        default): a layer at the image's depth holding what the same job gives in an 8-bit sRGB
        image, converted."""
        from paintbridge_krita.logic import SRGB8, convert_bgra

        w = h = 64
        doc, source = self.document(w, h)
        layer = self.run_ok(
            s, self.controller(model="test:identity", seed=11), "txt2img", doc, source
        )
        wanted = bytes(layer.pixelData(0, 0, w, h)) if layer is not None else None
        doc.setModified(False)
        doc.close()
        for depth in ("U16", "F16", "F32"):
            doc, source = self.document(w, h, depth, LINEAR)
            ctrl = self.controller(model="test:identity", seed=11)
            layer = self.run_ok(s, ctrl, "txt2img", doc, source)
            if layer is not None:
                got = (layer.colorDepth(), layer.colorProfile())
                s.check(got == (depth, doc.colorProfile()), f"{depth}: the new layer is {got}")
                if wanted is not None:
                    new = convert_bgra(bytes(layer.pixelData(0, 0, w, h)), w, h, got, SRGB8)
                    diff = self.differences(wanted, new)
                    s.info[depth] = diff
                    s.check(diff[1] <= 1, f"{depth}: not the sRGB result converted: {diff}")
            doc.setModified(False)
            doc.close()

    def as_srgb(self, doc, node, rect, profile=SRGB):
        """The node's pixels in `rect` as they are in `profile`: a copy converted by Krita."""
        copy = node.duplicate()
        doc.rootNode().addChildNode(copy, None)
        copy.setColorSpace("RGBA", "U8", profile)
        doc.waitForDone()
        data = bytes(copy.pixelData(*rect))
        copy.remove()
        return data

    def differences(self, a, b):
        """(pixels that differ, largest difference of a channel) of two BGRA buffers."""
        if len(a) != len(b):
            raise ValueError(f"{len(a)} bytes against {len(b)}")
        pixels = sum(1 for i in range(0, len(a), 4) if a[i : i + 4] != b[i : i + 4])
        return pixels, max((abs(a[i] - b[i]) for i in range(len(a))), default=0)

    def scenario_identity_layer_profile(self, s):
        """A layer converted to another profile than the image's (Layer > Convert Layer Color
        Space: ClayRGB, linear sRGB, Rec2020), Image to Image and Fill Selection with
        test:identity: the image looks as before and the model got the layer's colours in sRGB.
        The layer's bytes were written unchanged into a layer of the image's profile (4095 of
        4096 pixels changed, by up to 111 levels)."""
        from krita import Selection
        from paintbridge_krita.hostkit.pixels import payload_to_rgba, rgba_to_bgra
        from paintbridge_krita.logic import plan_img2img

        w = h = 64  # the identity model's own size
        for profile in (CLAY, LINEAR, REC2020):
            for task in ("img2img", "inpaint"):
                what = f"{task}, {profile}"
                doc, source = self.document(w, h)
                source.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
                source.setColorSpace("RGBA", "U8", profile)
                doc.waitForDone()
                if not s.check(source.colorProfile() == profile, f"{what}: no such profile"):
                    doc.close()
                    continue
                ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
                if task == "img2img":
                    sent = payload_to_rgba(plan_img2img(doc, source, ctrl.params).job["image"])
                    wanted = self.as_srgb(doc, source, (0, 0, w, h))
                    diff = self.differences(rgba_to_bgra(sent[2]), wanted)
                    s.info[what + ", sent"] = diff
                    s.check(diff[1] <= 1, f"{what}: the model got other colours: {diff}")
                else:
                    sel = Selection()
                    sel.select(16, 16, 32, 32, 255)
                    doc.setSelection(sel)
                self.run_keeping_the_look(s, ctrl, task, doc, source, what, tolerance=1)
                doc.setModified(False)
                doc.close()

    def scenario_identity_document_profile(self, s):
        """8-bit RGB/Alpha images in another profile than sRGB (ClayRGB, linear sRGB): Image to
        Image with test:identity sends the layer's colours in sRGB (the image's own encoding was
        sent as if it were sRGB: a linear image reached the model much darker) and the image
        looks as before (within rounding: 8-bit pixels go to sRGB and back)."""
        from paintbridge_krita.hostkit.pixels import payload_to_rgba, rgba_to_bgra
        from paintbridge_krita.logic import plan_img2img

        w = h = 64
        for profile in (CLAY, LINEAR):
            doc, source = self.document(w, h, profile=profile)
            if not s.check(doc.colorProfile() == profile, f"{profile}: no such profile"):
                doc.close()
                continue
            muted = bytes(
                b if i % 4 == 3 else 96 + b % 64 for i, b in enumerate(pattern_bgra(w, h))
            )
            source.setPixelData(muted, 0, 0, w, h)  # inside sRGB's gamut, so nothing is clipped
            ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
            sent = payload_to_rgba(plan_img2img(doc, source, ctrl.params).job["image"])
            diff = self.differences(rgba_to_bgra(sent[2]), self.as_srgb(doc, source, (0, 0, w, h)))
            s.info[profile + ", sent"] = diff
            s.check(diff[1] <= 1, f"{profile}: the model got other colours than sRGB: {diff}")
            layer = self.run_keeping_the_look(s, ctrl, "img2img", doc, source, profile, tolerance=2)
            if layer is not None:
                s.check(layer.colorProfile() == profile, f"the new layer is {layer.colorProfile()}")
            doc.setModified(False)
            doc.close()

    def scenario_generate_document_profile(self, s):
        """Generate in 8-bit images in another profile than sRGB: the new layer holds what the
        same job gives in an sRGB image, converted to the image's profile (the model's sRGB was
        written raw into the image's profile: up to 141 levels off)."""
        w = h = 64
        wanted = {}
        for profile in (SRGB, CLAY, LINEAR):
            doc, source = self.document(w, h, profile=profile)
            ctrl = self.controller(model="test:identity", steps=2, seed=11)
            layer = self.run_ok(s, ctrl, "txt2img", doc, source)
            if layer is not None and profile == SRGB:
                alpha = bytes(layer.pixelData(0, 0, w, h))[3::4]
                s.info["opaque"] = sum(1 for a in alpha if a == 255)
                for other in (CLAY, LINEAR):
                    wanted[other] = self.as_srgb(doc, layer, (0, 0, w, h), other)
            elif layer is not None and wanted:
                s.check(layer.colorProfile() == profile, f"the layer is {layer.colorProfile()}")
                diff = self.differences(wanted[profile], bytes(layer.pixelData(0, 0, w, h)))
                s.info[profile] = diff
                s.check(diff[1] <= 1, f"{profile}: not the sRGB result converted: {diff}")
            doc.setModified(False)
            doc.close()

    def scenario_fill_needs_selection(self, s):
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        self._expect_error(s, self.controller(), "inpaint", doc, source, ["Select"])
        doc.close()

    def scenario_bad_settings(self, s):
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        self._expect_error(s, self.controller(strength=1.5), "img2img", doc, source, ["Strength"])
        doc.close()

    def scenario_server_rejects(self, s):
        """The server refuses the job (unknown model): its message reaches the user."""
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller(model="no-such-model")
        count = len(self.names(doc))
        if ctrl.run("img2img", doc, source):
            self.wait(ctrl)
        s.info["error"] = ctrl.last_error
        s.check(bool(ctrl.last_error) and "no-such-model" in ctrl.last_error, "no clear error")
        s.check(len(self.names(doc)) == count, "a layer was added")
        doc.close()

    def scenario_cancel(self, s):
        """Cancel right after the job is sent: it ends cancelled on the server, no layer."""
        doc, source = self.document(64, 64)
        ctrl = self.controller(steps=150)
        count = len(self.names(doc))
        messages = []
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        s.check(ctrl.run("txt2img", doc, source), f"did not start: {ctrl.last_error}")
        job_id = self.sent_id(ctrl)
        texts = []
        ctrl.progress.connect(lambda step, steps, text: texts.append(text))
        ctrl.cancel()
        s.check(self.wait(ctrl), "the job did not end")
        s.info["progress"] = texts[:5]
        s.check(all(t.startswith("Cancelling") for t in texts), f"progress after cancel {texts}")
        s.info["messages"] = messages
        s.check(ctrl.last_error is None, f"error: {ctrl.last_error}")
        s.check(any("cancelled" in text.lower() for _, text in messages), "no cancel message")
        s.check(len(self.names(doc)) == count, "a layer was added")
        client = ctrl.client()
        state = client.status(job_id).get("state")
        s.info["server_state"] = state
        s.check(state == "cancelled", f"the server says {state!r}")
        doc.close()

    def scenario_cancel_while_running(self, s):
        """Cancel once steps run: until the server stops at its next step, the polls keep
        saying it is being cancelled (they went back to "Step n of N", as if Cancel did
        nothing)."""
        from PyQt5.QtCore import QEventLoop, QTimer

        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller(model="test:identity", steps=150, strength=1.0)
        texts = []
        ctrl.progress.connect(lambda step, steps, text: texts.append(text))
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        deadline = time.time() + 60
        while not any(t.startswith("Step") for t in texts) and time.time() < deadline:
            loop = QEventLoop()
            QTimer.singleShot(50, loop.quit)
            loop.exec_()
        s.check(any(t.startswith("Step") for t in texts), f"no step reported: {texts}")
        mark = len(texts)
        ctrl.cancel()
        s.check(self.wait(ctrl), "the job did not end")
        after = texts[mark:]
        s.info["progress_after_cancel"] = after[:6]
        s.check(bool(after) and all(t.startswith("Cancelling") for t in after), f"{after}")
        doc.close()

    def scenario_closed_mid_job(self, s):
        """The document closes while its job runs: nothing breaks, a clear message that gives
        the command that saves the result from the server's history."""
        doc, source = self.document(64, 64)
        ctrl = self.controller()
        s.check(ctrl.run("txt2img", doc, source), f"did not start: {ctrl.last_error}")
        job_id = self.sent_id(ctrl)
        doc.setModified(False)
        doc.close()
        s.check(self.wait(ctrl), "the job did not end")
        s.info["error"] = ctrl.last_error
        s.check("closed" in (ctrl.last_error or ""), "no 'closed' message")
        command = f"paintbridge history export {job_id} --out"
        s.check(command in (ctrl.last_error or ""), f"the message does not say {command!r}")

    def convert_mid_job(self, s, model, depth, profile):
        """Converts the image to `model`/`depth`/`profile` while its Image to Image job
        (test:identity) runs. Returns (the new layer or None, the messages, the job's id)."""
        doc, source = self.document(64, 64)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        messages = []
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        count = len(self.names(doc))
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        job_id = self.sent_id(ctrl)
        doc.setColorSpace(model, depth, profile)
        doc.waitForDone()
        s.check(self.wait(ctrl), "the job did not end")
        s.info.update(space=[doc.colorModel(), doc.colorDepth(), doc.colorProfile()])
        s.info.update(messages=messages, layers=self.names(doc))
        layer = ctrl.last_nodes[-1] if ctrl.last_nodes and ctrl.last_error is None else None
        if layer is not None:
            s.check(len(self.names(doc)) == count + 1, "not one new layer")
            got = (layer.colorDepth(), layer.colorProfile())
            s.check(got == (depth, doc.colorProfile()), f"the new layer is {got}")
            # test:identity gives back the 8-bit sRGB source: placed, it is that converted to
            # the image's new depth and profile (as 8-bit sRGB, two 8-bit ClayRGB round trips,
            # the source's and the result's, differed by up to 7 levels: a tolerance would hide
            # the bytes left unconverted, which differ by up to 140)
            from paintbridge_krita.logic import SRGB8, convert_bgra

            want = convert_bgra(pattern_bgra(64, 64), 64, 64, SRGB8, got)
            s.info["difference"] = self.differences(want, bytes(layer.pixelData(0, 0, 64, 64)))
            s.check(s.info["difference"][0] == 0, f"the result differs: {s.info['difference']}")
        else:
            s.check(len(self.names(doc)) == count, "a layer was added")
        doc.setModified(False)
        doc.close()
        return layer, messages, job_id

    def converted_mid_job(self, s, depth, profile):
        layer, messages, _ = self.convert_mid_job(s, "RGBA", depth, profile)
        s.check(layer is not None, "no new layer")
        warnings = [text for level, text in messages if level == "warning"]
        s.check(any("converted" in text for text in warnings), "no warning of the conversion")
        return " ".join(warnings)

    def scenario_converted_mid_job(self, s):
        """The image is converted to 16-bit while its job runs: the 8-bit result is converted to
        16 bits as it is placed, and a warning says so. (Krita once took the 8-bit result as
        too few bytes and added an empty layer; then the result was refused.)"""
        self.converted_mid_job(s, "U16", "")

    def scenario_profile_changed_mid_job(self, s):
        """The image is converted to another profile (still 8-bit RGB/Alpha) while its job runs:
        the result is converted to that profile (it once went in unnoticed, its colours read in
        the new profile), and the warning names it."""
        warning = self.converted_mid_job(s, "U8", CLAY)
        s.check(CLAY in warning, "the warning does not name the profile")

    def scenario_model_changed_mid_job(self, s):
        """The image is converted to Grayscale while its job runs: nothing is added, and the
        message says why, how to get back, and where the result is."""
        layer, messages, job_id = self.convert_mid_job(s, "GRAYA", "U8", "")
        errors = [text for level, text in messages if level == "error"]
        s.info["errors"] = errors
        s.check(layer is None and bool(errors), "no error")
        error = errors[-1] if errors else ""
        s.check("Grayscale" in error and "Convert Image Color Space" in error, "no way back")
        s.check(f"history export {job_id}" in error, "no history command")

    def scenario_cropped_mid_job(self, s):
        """The canvas is cropped while the job runs: the result is still added, where the job's
        area was (all Krita knows), and a warning says the canvas changed size."""
        w, h, rect = 96, 80, (16, 8, 48, 40)
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, rect), 0, 0, w, h)
        ctrl = self.controller()
        messages = []
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        doc.crop(10, 4, 60, 50)
        doc.waitForDone()
        s.check(self.wait(ctrl), "the job did not end")
        s.info.update(messages=messages, error=ctrl.last_error)
        s.check(ctrl.last_error is None, f"error: {ctrl.last_error}")
        s.check(bool(ctrl.last_nodes), "no new layer")
        warnings = [text for level, text in messages if level == "warning"]
        s.check(
            any("changed size" in text and "96x80" in text for text in warnings),
            "no warning that the canvas changed size",
        )
        doc.setModified(False)
        doc.close()

    def scenario_moved_mid_job(self, s):
        """The source layer is moved (Move tool) while the job runs: the result goes where its
        pixels went, with a note; it landed where they had been, without a word."""
        w, h = 96, 80
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, (0, 0, 32, 32)), 0, 0, w, h)
        ctrl = self.controller()
        messages = []
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        source.move(40, 40)
        doc.waitForDone()
        s.info["moved_to"] = self.bounds(source)
        s.check(self.wait(ctrl), "the job did not end")
        s.info.update(messages=messages, error=ctrl.last_error)
        s.check(ctrl.last_error is None, f"error: {ctrl.last_error}")
        if s.check(bool(ctrl.last_nodes), "no new layer"):
            s.info["new_bounds"] = self.bounds(ctrl.last_nodes[-1])
            s.check(s.info["new_bounds"] == [40, 40, 32, 32], f"at {s.info['new_bounds']}")
        warnings = [text for level, text in messages if level == "warning"]
        s.check(any("was moved" in text for text in warnings), f"no note: {messages}")
        # another animation frame shown meanwhile: its pixels elsewhere are not a move
        messages.clear()
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        doc.setCurrentTime(3)
        source.move(0, 0)
        doc.waitForDone()
        s.info["frame"] = doc.currentTime()
        s.check(self.wait(ctrl), "the second job did not end")
        if s.check(doc.currentTime() == 3, f"frame {doc.currentTime()}") and ctrl.last_nodes:
            s.info["new_bounds_other_frame"] = self.bounds(ctrl.last_nodes[-1])
            where = s.info["new_bounds_other_frame"]
            s.check(where == [40, 40, 32, 32], f"followed onto another frame: {where}")
        doc.setModified(False)
        doc.close()

    def scenario_other_document_mid_job(self, s):
        """Another document is made and given a layer while the job runs, and the source layer
        is locked in a locked group: the result still goes above its source, in its document."""
        doc, _ = self.document(64, 64)
        group = doc.createGroupLayer("locked group")
        doc.rootNode().addChildNode(group, None)
        source = doc.createNode("inner", "paintlayer")
        group.addChildNode(source, None)
        source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
        ctrl = self.controller()
        s.check(ctrl.run("img2img", doc, source), f"did not start: {ctrl.last_error}")
        group.setLocked(True)
        source.setLocked(True)
        other, other_source = self.document(64, 64)
        other_count = len(self.names(other))
        layer = None
        if self.wait(ctrl):
            layer = ctrl.last_nodes[-1] if ctrl.last_nodes else None
        s.check(ctrl.last_error is None, f"error: {ctrl.last_error}")
        s.check(layer is not None, "no new layer")
        if layer is not None:
            self.check_directly_above(s, source, layer)
        s.check(len(self.names(other)) == other_count, "a layer went to the other document")
        for d in (doc, other):
            d.setModified(False)
            d.close()

    def scenario_img2img_layer_kinds(self, s):
        """Image to Image and Fill Selection on layers without pixels of their own (Krita's
        pixelData is empty for group and clone layers, one byte per pixel for filter and fill
        layers): what the layer looks like is sent (test:identity gives it back), the result
        goes directly above the layer. An empty vector or file layer gets a clear message."""
        from krita import InfoObject, Selection

        w = h = 64  # the identity model's own size: every layer here covers the whole canvas
        doc, source = self.document(w, h)
        root = doc.rootNode()
        source.setPixelData(pattern_alpha_bgra(w, h, (0, 0, w, h)), 0, 0, w, h)
        group = doc.createGroupLayer("group")
        root.addChildNode(group, source)
        inner = doc.createNode("inner", "paintlayer")
        group.addChildNode(inner, None)
        inner.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
        clone = doc.createCloneLayer("clone", source)
        root.addChildNode(clone, group)
        everywhere = Selection()
        everywhere.select(0, 0, w, h, 255)
        invert = doc.createFilterLayer("filter", self.krita.filter("invert"), everywhere)
        root.addChildNode(invert, clone)
        info = InfoObject()
        info.setProperty("color", "#3080ff")
        fill = doc.createFillLayer("fill", "color", info, everywhere)
        root.addChildNode(fill, None)
        vector = doc.createVectorLayer("vector")
        root.addChildNode(vector, None)
        file_layer = doc.createFileLayer("file", "/nonexistent/paintbridge.png", "None")
        root.addChildNode(file_layer, None)
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        kinds = s.info["kinds"] = {}
        for node in (group, clone, invert):
            self.projection(doc)
            box = tuple(self.bounds(node))
            expected = bytes(node.projectionPixelData(*box))
            layer = self.run_ok(s, ctrl, "img2img", doc, node)
            if layer is None:
                kinds[node.type()] = ctrl.last_error
                continue
            diff = compare_identity(expected, bytes(layer.pixelData(*box)))
            kinds[node.type()] = {"bounds": self.bounds(layer), "box": box, "diff": diff}
            s.check(self.bounds(layer) == list(box), f"{node.type()}: bounds {kinds[node.type()]}")
            s.check(
                not (diff["alpha"] or diff["opaque"] or diff["partial"]), f"{node.type()}: {diff}"
            )
            self.check_directly_above(s, node, layer)
        sel = Selection()
        sel.select(20, 20, 20, 16, 255)
        doc.setSelection(sel)
        for node in (group, fill):
            fill_ctrl = self.controller()
            layer = self.run_ok(s, fill_ctrl, "inpaint", doc, node)
            kinds["fill on " + node.type()] = fill_ctrl.last_error or self.bounds(layer)
            if layer is not None:
                self.check_directly_above(s, node, layer)
        doc.setSelection(Selection())
        for node in (vector, file_layer):
            self._expect_error(s, self.controller(), "img2img", doc, node, ["empty"])
            kinds[node.type()] = s.info.pop("error")
        doc.close()

    def scenario_generate_on_mask(self, s):
        """Generate with a mask as the active node: the new layer goes directly above the layer
        that owns the mask (a paint layer takes only masks as children: Krita refuses it there
        while addChildNode says True), and it really is in the image."""
        for kind in ("transparencymask", "filtermask", "selectionmask"):
            doc, source = self.document(64, 48)
            mask = doc.createNode("mask", kind)
            source.addChildNode(mask, None)
            ctrl = self.controller()
            layer = self.run_ok(s, ctrl, "txt2img", doc, mask)
            parent = layer.parentNode() if layer is not None else None
            s.info[kind] = [parent.name() if parent is not None else None, self.names(doc)]
            if s.check(parent is not None, f"{kind}: the new layer is not in the image"):
                s.check(parent.type() == "grouplayer", f"{kind}: put under a {parent.type()}")
                self.check_above(s, doc, source, layer)
            doc.close()

    def scenario_place_checks_layer(self, s):
        """When Krita does not take the new layer (forced here by inserting it under a paint
        layer, as before the mask fix), the user is told so and where the result is; no 'Done'."""
        from paintbridge_krita import logic

        doc, source = self.document(64, 48)
        mask = doc.createNode("mask", "transparencymask")
        source.addChildNode(mask, None)
        ctrl = self.controller()
        messages = []
        ctrl.message.connect(lambda level, text: messages.append((level, text)))
        insert_point = logic._insert_point
        logic._insert_point = lambda plan: (source, mask)
        try:
            started = ctrl.run("txt2img", doc, source)
            s.check(started, f"did not start: {ctrl.last_error}")
            s.check(self.wait(ctrl), "the job did not end")
        finally:
            logic._insert_point = insert_point
        s.info.update(error=ctrl.last_error, messages=messages)
        s.check("did not add" in (ctrl.last_error or ""), "no 'did not add' message")
        s.check("history export" in (ctrl.last_error or ""), "the message does not say where it is")
        s.check(not any(text.startswith("Done") for _level, text in messages), "said Done")
        doc.close()

    def scenario_img2img_selection_off_layer(self, s):
        """A selection whose bounds span the layer but whose pixels miss it (two blobs either
        side): an error, no job and no empty layer "done"; a selection partly over the layer
        sends only the tight box of what is selected there."""
        from krita import Selection

        w, h = 128, 128
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, (40, 40, 40, 40)), 0, 0, w, h)
        sel = Selection()
        for x, y in ((0, 0), (96, 96)):
            part = Selection()
            part.select(x, y, 30, 30, 255)
            sel.add(part)
        doc.setSelection(sel)
        self._expect_error(
            s, self.controller(), "img2img", doc, source, ["does not cover any pixel"]
        )
        # a layer of two blobs (its bounds span the gap), the selection in the gap: no pixel
        gap = doc.createNode("blobs", "paintlayer")
        doc.rootNode().addChildNode(gap, None)
        gap.setPixelData(pattern_bgra(24, 24), 0, 0, 24, 24)
        gap.setPixelData(pattern_bgra(24, 24), 100, 100, 24, 24)
        sel = Selection()
        sel.select(40, 40, 30, 30, 255)
        doc.setSelection(sel)
        s.info["blob_bounds"] = self.bounds(gap)
        self._expect_error(s, self.controller(), "img2img", doc, gap, ["does not cover any pixel"])
        gap.remove()
        sel = Selection()
        for x, y in ((0, 0), (60, 60)):  # the second blob covers the layer's corner 60..79
            part = Selection()
            part.select(x, y, 30, 30, 255)
            sel.add(part)
        doc.setSelection(sel)
        layer = self.run_ok(s, self.controller(), "img2img", doc, source)
        if layer is not None:
            s.info["new_bounds"] = self.bounds(layer)
            s.check(s.info["new_bounds"] == [60, 60, 20, 20], f"bounds {s.info['new_bounds']}")
        doc.close()

    def scenario_img2img_filter_mask(self, s):
        """A blur filter mask draws past the layer's own pixels: Image to Image takes what
        the layer shows, soft edge included (node.bounds() is only the layer's own pixels)."""
        w = h = 96
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, (40, 40, 16, 16)), 0, 0, w, h)
        blur = self.krita.filter("gaussian blur")
        config = blur.configuration()
        config.setProperty("horizRadius", 12)
        config.setProperty("vertRadius", 12)
        blur.setConfiguration(config)
        source.addChildNode(doc.createFilterMask("blur", blur, source), None)
        doc.refreshProjection()
        doc.waitForDone()
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            x, y, bw, bh = s.info["new_bounds"] = self.bounds(layer)
            s.check(x < 40 and y < 40 and x + bw > 56 and y + bh > 56, f"bounds {x, y, bw, bh}")
        doc.close()
        # the same blur on a group: the group's bounds leave the soft edge out too
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h, (40, 40, 16, 16)), 0, 0, w, h)
        group = doc.createGroupLayer("group")
        root = doc.rootNode()
        root.addChildNode(group, source)
        source.remove()
        group.addChildNode(source, None)
        group.addChildNode(doc.createFilterMask("blur", blur, group), None)
        doc.refreshProjection()
        doc.waitForDone()
        layer = self.run_ok(s, ctrl, "img2img", doc, group)
        if layer is not None:
            x, y, bw, bh = s.info["group_bounds"] = self.bounds(layer)
            s.check(x < 40 and y < 40 and x + bw > 56 and y + bh > 56, f"group {x, y, bw, bh}")
        doc.close()

    def scenario_generate_big_canvas(self, s):
        """Generate on a canvas larger than a server takes: the plug-in's own words (the
        server's named `width` * `height`, fields the docker does not have), no job."""
        doc, source = self.document(5000, 4000)
        self._expect_error(
            s, self.controller(), "txt2img", doc, source, ["5000x4000", "Select a smaller area"]
        )
        doc.close()

    def scenario_img2img_lasso(self, s):
        """Image to Image with a round, feathered selection: the new layer's alpha is the
        source's times the selection, so nothing outside the selection changes and partly
        selected pixels change partly (test:identity: the colours come back unchanged)."""
        from krita import Selection

        w, h = 128, 96
        cx, cy, radius, feather = 59.5, 47.5, 32, 6  # bounds 64x64: identity's own size
        doc, source = self.document(w, h)
        source.setPixelData(pattern_bgra(w, h), 0, 0, w, h)
        mask = bytearray(w * h)
        for y in range(h):
            for x in range(w):
                d = ((x - cx) ** 2 + (y - cy) ** 2) ** 0.5
                mask[y * w + x] = max(0, min(255, int(round((radius - d) * 255 / feather))))
        sel = Selection()
        sel.setPixelData(bytes(mask), 0, 0, w, h)
        doc.setSelection(sel)
        read = bytes(doc.selection().pixelData(0, 0, w, h))
        s.info["partial_pixels"] = sum(1 for v in read if 0 < v < 255)
        before = self.projection(doc)
        ctrl = self.controller(model="test:identity", steps=2, strength=1.0)
        layer = self.run_ok(s, ctrl, "img2img", doc, source)
        if layer is not None:
            new = bytes(layer.pixelData(0, 0, w, h))
            src = bytes(source.pixelData(0, 0, w, h))
            wrong_alpha = colour = outside_changed = 0
            after = self.projection(doc)
            for i in range(w * h):
                want = (src[i * 4 + 3] * read[i] + 127) // 255
                wrong_alpha += new[i * 4 + 3] != want
                colour += bool(want) and new[i * 4 : i * 4 + 3] != src[i * 4 : i * 4 + 3]
                outside_changed += (
                    read[i] == 0 and after[i * 4 : i * 4 + 4] != before[i * 4 : i * 4 + 4]
                )
            s.info.update(
                bounds=self.bounds(layer),
                wrong_alpha=wrong_alpha,
                colour=colour,
                outside_changed=outside_changed,
            )
            s.check(s.info["partial_pixels"] > 100, "the selection is not feathered")
            s.check(wrong_alpha == 0, f"{wrong_alpha} pixels' alpha is not source x selection")
            s.check(colour == 0, f"{colour} pixels' colour differs from the source")
            s.check(outside_changed == 0, f"{outside_changed} pixels outside the selection changed")
        doc.close()

    def scenario_unexpected_error(self, s):
        """An error no check foresaw (here a planner raising RuntimeError) ends as a message,
        not as a traceback out of the button's slot; no layer."""
        from paintbridge_krita import logic

        doc, source = self.document(64, 64)
        ctrl = self.controller()

        def broken(document, node, params):
            raise RuntimeError("something Krita did not expect")

        planner = logic.PLANNERS["img2img"]
        logic.PLANNERS["img2img"] = broken
        try:
            self._expect_error(s, ctrl, "img2img", doc, source, ["RuntimeError", "did not expect"])
        finally:
            logic.PLANNERS["img2img"] = planner
        # one while the finished result is placed: the message says where the result is kept
        from paintbridge_krita import controller as controller_module

        def place_broken(plan, ready, offset=(0, 0)):
            raise RuntimeError("Krita refused the layer")

        place = controller_module.place_results
        controller_module.place_results = place_broken
        try:
            source.setPixelData(pattern_bgra(64, 64), 0, 0, 64, 64)
            words = ["could not use its result: Krita refused the layer. ", "history export"]
            self._expect_error(s, self.controller(), "img2img", doc, source, words, sent=True)
        finally:
            controller_module.place_results = place
        doc.close()

    def run(self):
        results = {}
        names = self.config.get("scenarios") or sorted(
            name[len("scenario_") :] for name in dir(self) if name.startswith("scenario_")
        )
        for name in names:
            s = Scenario(name)
            try:
                getattr(self, "scenario_" + name)(s)
            except Exception:
                s.failures.append(traceback.format_exc())
            results[name] = {"ok": not s.failures, "failures": s.failures, "info": s.info}
            write(self.config["out"], {"scenarios": results, "finished": False})
        write(self.config["out"], {"scenarios": results, "finished": True})


def write(path, data):
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    import os

    os.replace(path + ".tmp", path)


def __main__(args):
    with open(args[0]) as handle:
        config = json.load(handle)
    try:
        Driver(config).run()
    except Exception:
        write(config["out"], {"error": traceback.format_exc(), "finished": False})
