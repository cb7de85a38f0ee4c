"""negguide: the always-visible "Negative guidance" panel for AUTOMATIC1111 1.8-1.10, Forge and its forks
(reForge, Forge Classic, Forge Neo).

Thin: everything lives in ``negguide_webui`` (glue) and ``negguide`` (the backend-neutral core), both in this
extension's root folder. API: ``alwayson_scripts: {"negative guidance": {"args": [...]}}`` in the order of
``negguide_webui.settings.ARG_NAMES``.
"""

import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _root not in sys.path:
    sys.path.insert(0, _root)

from modules import script_callbacks, scripts  # noqa: E402

from negguide_webui import settings as S  # noqa: E402
from negguide_webui import ui, xyz  # noqa: E402
from negguide_webui.extension import NegGuideAlwaysOn  # noqa: E402


class NegGuideScript(NegGuideAlwaysOn, scripts.Script):
    sorting_priority = 15

    def title(self):
        return "Negative guidance"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        comps, _status = ui.build(is_img2img)
        self.infotext_fields = ui.infotext_fields(comps)
        self.paste_field_names = list(S.INFOTEXT_KEYS.values())
        return comps


script_callbacks.on_before_ui(xyz.register_with_webui)
