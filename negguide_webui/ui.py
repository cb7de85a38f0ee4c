"""The "Negative guidance" panel, built with the gradio API shared by gradio 3.41 (A1111 1.10) and 4.x
(Forge): ``Accordion``, ``Group``, ``Row``, ``Radio``, ``Dropdown``, ``Number``, ``Slider``, ``Checkbox``,
``Markdown``, ``.change`` and ``gr.update``. Nothing here imports torch: the settings are checked with the
core's torch-free configuration classes.

The components are returned in :data:`negguide_webui.settings.ARG_NAMES` order: that is the order of the
script's args in the WebUI and of ``alwayson_scripts["negative guidance"]["args"]`` in API requests.
"""

from __future__ import annotations

from negguide import TRACKERS, SamplerInfo, StepWindow, describe_tracker
from negguide.configs import ADAPTIVE_SIGNALS

from . import settings as S

ELEM = "negguide"

MODE_HELP = {
    S.MODE_OFF: "Negative guidance is off: the WebUI's own negative prompt behaviour.",
    S.MODE_WINDOWED: "The negative prompt acts only inside the step window (Ban et al. 2024: steps 5-15 of 30); "
    "elsewhere the unconditional branch gets the empty prompt. A window over the first steps only "
    "shows the 'reverse activation' effect.",
    S.MODE_DNG: "Dynamic Negative Guidance (Koulischer et al. 2025): the negative term is scaled per image by "
    "lambda0 p/(1-p), p the tracked posterior that the image shows the negative prompt. One extra "
    "UNet row per image (two more on the steps where a deterministic sampler's tracker probes).",
    S.MODE_DNS: "Diffusion-negative sample (Desai & Vasconcelos 2024, Eq. 19): samples what the model finds "
    "least like your prompt, with s = CFG scale - 1. Use it to see what to write as a negative prompt.",
    S.MODE_ADAPTIVE: "The negative prompt starts per image when a signal measured at each step fires, inside the "
    "window: its start is the earliest start, its end where the negative stops (the core's default window: "
    f"{StepWindow.adaptive_default().describe()}). Until an image has started, its negative branch runs as one "
    "extra UNet row to measure the signal; signal 'none' is the windowed mode, bit for bit.",
    S.MODE_NP_LAMBDA: "Constant negative guidance, the DNG paper's baseline: empty + w (prompt - empty) - lambda "
    "(negative - prompt) with a fixed lambda (DNG without its posterior). One extra UNet row per image.",
}

SIGNAL_HELP = {
    "alignment": "an image starts when cos(negative - empty, prompt - empty) reaches the threshold (a cosine)",
    "gap": "an image starts when |negative - prompt| has fallen to the threshold times its running peak",
    "none": "every image starts at the window's start",
}


UNIT_LABELS = {
    False: ("Negative prompt from (step, 1-based)", "to (inclusive)", "Hires from (step)", "Hires to (inclusive)"),
    True: (
        "Negative prompt from (fraction of the run)",
        "to (fraction, exclusive)",
        "Hires from (fraction)",
        "Hires to (fraction, exclusive)",
    ),
}


def status_text(s: S.NegGuideSettings) -> str:
    """The panel's live status line: what the mode does, the tracker and its cost, or what is invalid."""
    errors = S.validate(s, negative_prompt="x", prompt="")
    lines = [MODE_HELP.get(s.mode, "")]
    if s.mode_key == "adaptive" and not errors:
        lines.append(f"Signal: {SIGNAL_HELP.get(s.adaptive_signal, s.adaptive_signal)}.")
    if s.mode_key == "dng" and not errors:
        config = s.dng_config()
        lines.append(f"Tracker, ancestral/SDE samplers: {describe_tracker(config, SamplerInfo(True))}.")
        lines.append(f"Tracker, deterministic samplers: {describe_tracker(config, SamplerInfo(False))}.")
    if not errors:
        lines += S.notes(s)
    lines += [f"**{e}**" for e in errors]
    return "\n\n".join(x for x in lines if x)


def build(
    is_img2img: bool = False,
    open_panel: bool = False,
    initial: S.NegGuideSettings | None = None,
    advanced_open: bool = False,
):
    """Create the panel inside the current gradio Blocks context. Returns ``(components, status)``."""
    import gradio as gr

    tab = "img2img" if is_img2img else "txt2img"
    d = initial or S.NegGuideSettings()
    frac0 = d.window_unit == S.UNIT_FRACTION

    def eid(name):
        return f"{ELEM}_{tab}_{name}"

    windowed, dng = d.mode_key in S.WINDOWED_KEYS, d.mode_key == "dng"
    adaptive, constant = d.mode_key == "adaptive", d.mode_key == "np_lambda"
    with gr.Accordion("Negative guidance", open=open_panel, elem_id=eid("accordion")):
        mode = gr.Radio(list(S.MODES), value=d.mode, label="Mode", elem_id=eid("mode"))
        with gr.Group(visible=windowed, elem_id=eid("window_group")) as window_group:
            with gr.Row():
                window_unit = gr.Radio(
                    list(S.UNITS), value=d.window_unit, label="Window in", elem_id=eid("window_unit")
                )
                window_start = gr.Number(value=d.window_start, label=UNIT_LABELS[frac0][0], elem_id=eid("window_start"))
                window_end = gr.Number(value=d.window_end, label=UNIT_LABELS[frac0][1], elem_id=eid("window_end"))
            with gr.Row():
                hr_window = gr.Dropdown(
                    list(S.HR_MODES), value=d.hr_window, label="Hires pass window", elem_id=eid("hr_window")
                )
                own = d.hr_window == S.HR_CUSTOM
                hr_start = gr.Number(value=d.hr_start, label=UNIT_LABELS[frac0][2], visible=own,
                                     elem_id=eid("hr_start"))
                hr_end = gr.Number(value=d.hr_end, label=UNIT_LABELS[frac0][3], visible=own, elem_id=eid("hr_end"))
        with gr.Row(visible=dng, elem_id=eid("dng_row")) as dng_row:
            lambda0 = gr.Slider(
                minimum=0.0, maximum=30.0, step=0.1, value=d.lambda0, label="DNG lambda0 (0: no negative guidance)",
                elem_id=eid("lambda0"),
            )
            prior = gr.Number(value=d.prior, label="DNG prior p0", elem_id=eid("prior"))
        with gr.Accordion("Advanced DNG settings", open=advanced_open, visible=dng, elem_id=eid("advanced")) as adv:
            with gr.Row():
                temperature = gr.Number(value=d.temperature, label="Temperature tau", elem_id=eid("temperature"))
                offset = gr.Number(value=d.offset, label="Offset delta", elem_id=eid("offset"))
                p_max = gr.Number(value=d.p_max, label="p_max", elem_id=eid("p_max"))
                tracker = gr.Dropdown(list(TRACKERS), value=d.tracker, label="Posterior tracker",
                                      elem_id=eid("tracker"))
        plot = gr.Checkbox(value=d.plot, label="Add lambda(t) / p(t) plot to the outputs", visible=dng,
                           elem_id=eid("plot"))
        with gr.Row(visible=adaptive, elem_id=eid("adaptive_row")) as adaptive_row:
            adaptive_signal = gr.Dropdown(list(ADAPTIVE_SIGNALS), value=d.adaptive_signal, label="Start signal",
                                          elem_id=eid("adaptive_signal"))
            adaptive_threshold = gr.Number(value=d.adaptive_threshold, label="Signal threshold",
                                           elem_id=eid("adaptive_threshold"))
        negative_scale = gr.Number(value=d.negative_scale, label="Constant negative scale lambda", visible=constant,
                                   elem_id=eid("negative_scale"))
        status = gr.Markdown(status_text(d), elem_id=eid("status"))

    comps = [
        mode,
        window_unit,
        window_start,
        window_end,
        hr_window,
        hr_start,
        hr_end,
        lambda0,
        prior,
        temperature,
        offset,
        p_max,
        tracker,
        plot,
        adaptive_signal,  # appended: the API's args keep their order
        adaptive_threshold,
        negative_scale,
    ]
    assert len(comps) == len(S.ARG_NAMES)

    def refresh(*vals):
        try:
            s = S.NegGuideSettings.from_args(*vals)
        except (TypeError, ValueError) as e:
            return f"**Negative guidance: {e}**"
        return status_text(s)

    for c in comps:
        c.change(fn=refresh, inputs=comps, outputs=[status])

    def unit_labels(unit):
        frac = unit == S.UNIT_FRACTION
        labels = UNIT_LABELS[frac]
        return tuple(gr.update(label=lb) for lb in labels)

    window_unit.change(fn=unit_labels, inputs=[window_unit], outputs=[window_start, window_end, hr_start, hr_end])

    def shown_for(mode_value):
        """Only the controls the chosen mode uses."""
        key = S.MODE_KEYS.get(mode_value, mode_value)
        return tuple(gr.update(visible=v) for v in (key in S.WINDOWED_KEYS, key == "dng", key == "dng", key == "dng",
                                                    key == "adaptive", key == "np_lambda"))

    mode.change(fn=shown_for, inputs=[mode], outputs=[window_group, dng_row, adv, plot, adaptive_row, negative_scale])

    def own_hires_window(choice):
        return tuple(gr.update(visible=choice == S.HR_CUSTOM) for _ in range(2))

    hr_window.change(fn=own_hires_window, inputs=[hr_window], outputs=[hr_start, hr_end])
    return comps, status


def infotext_fields(comps) -> list:
    """``(component, key or function)`` pairs for the WebUI's paste of generation parameters. A pasted
    infotext without negguide keys switches the panel off."""
    by_name = dict(zip(S.ARG_NAMES, comps, strict=True))

    def mode_from(params):
        v = params.get(S.INFOTEXT_KEYS["mode"])
        return S.MODE_OFF if v is None else S.MODE_FROM_KEY.get(str(v).lower(), str(v))

    out = [(by_name["mode"], mode_from)]
    for name, key in S.INFOTEXT_KEYS.items():
        if name != "mode":
            out.append((by_name[name], key))
    return out
