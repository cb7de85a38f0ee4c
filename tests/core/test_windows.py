import pytest

from negguide.windows import StepWindow


def active_steps(window, n, **kw):
    return [i + 1 for i, a in enumerate(window.mask(n, **kw)) if a]


def test_paper_default_is_steps_5_to_15_of_30():
    assert active_steps(StepWindow.paper_default(), 30) == list(range(5, 16))
    assert active_steps(StepWindow(5, 15), 30) == list(range(5, 16))


def test_fraction_window_scales_with_step_count():
    assert active_steps(StepWindow.paper_default(), 60) == list(range(9, 31))
    assert active_steps(StepWindow.paper_default(), 20) == list(range(4, 11))


def test_reverse_activation_window_covers_only_the_first_steps():
    assert active_steps(StepWindow(1, 3), 30) == [1, 2, 3]


def test_step_window_beyond_the_run_is_simply_never_reached():
    assert active_steps(StepWindow(5, 15), 10) == list(range(5, 11))


def test_img2img_placement_as_tail_of_the_full_schedule():
    # img2img at strength 0.5 of 30 steps runs the last 15: schedule steps 16..30.
    assert active_steps(StepWindow(5, 20), 15, schedule_steps=30) == [1, 2, 3, 4, 5]
    # counted on its own steps instead
    assert active_steps(StepWindow(5, 20), 15) == list(range(5, 16))
    with pytest.raises(ValueError, match="schedule_steps"):
        StepWindow(5, 20).active(0, 15, schedule_steps=10)


def test_sigma_window_is_inclusive_and_needs_sigma():
    w = StepWindow(10.0, 1.0, "sigma")
    assert active_steps(w, 5, sigmas=[14.6, 10.0, 5.0, 1.0, 0.5]) == [2, 3, 4]
    with pytest.raises(ValueError, match="noise level"):
        w.active(0, 5)


@pytest.mark.parametrize("args, message", [
    ((0, 5), "count from step 1"),
    ((5.5, 8), "whole steps"),
    ((0.1, 1.5, "fraction"), r"\[0, 1\]"),
    ((1, 2, "seconds"), "unit"),
    ((float("nan"), 2), "finite"),
])
def test_invalid_windows_are_rejected_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        StepWindow(*args)


@pytest.mark.parametrize("window", [StepWindow(6, 5), StepWindow(9, 3), StepWindow(0.5, 0.5, "fraction"),
                                    StepWindow(0.6, 0.2, "fraction"), StepWindow(1.0, 5.0, "sigma"),
                                    StepWindow.never()])
def test_a_window_that_ends_before_it_starts_is_empty(window):
    """Well-defined, not an error: the negative prompt acts on no step (the baseline of a sweep)."""
    assert window.is_empty and "empty" in window.describe()
    assert not any(window.mask(10, sigmas=[14.0, 9.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.2, 0.1]))
