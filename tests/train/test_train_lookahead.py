"""train.lookahead: slow weights that trail the fast ones, and that the model ends on."""

import torch
from torch import nn

from train.lookahead import Lookahead


def test_lookahead_moves_the_slow_copy_and_restarts_the_fast_weights_from_it():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    start = [t.clone() for t in model.state_dict().values()]
    lookahead = Lookahead(model, every=2, final_decay=0.5, total_steps=4)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    lookahead.after_step(model, 1)  # not a multiple of `every`: nothing happens
    assert torch.equal(model[0].weight, start[0] + 1)
    lookahead.after_step(model, 4)  # decay = 0.5 * (4/4)^3: half-way back to the slow copy
    assert torch.allclose(model[0].weight, start[0] + 0.5)
    assert model[1].num_batches_tracked.dtype == torch.int64  # integer buffers untouched


def test_lookahead_is_plain_training_early_and_the_model_ends_on_the_slow_weights():
    model = nn.Linear(3, 1)
    lookahead = Lookahead(model, every=1, final_decay=0.9, total_steps=1000)
    with torch.no_grad():
        model.weight.fill_(2.0)
    lookahead.after_step(model, 1)  # decay 0.9 * 1e-9: the slow copy jumps to the fast weights
    assert torch.allclose(model.weight, torch.full_like(model.weight, 2.0))
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.finish(model)
    assert torch.allclose(model.weight, torch.full_like(model.weight, 2.0), atol=1e-6)
