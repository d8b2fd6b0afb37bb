"""One learning step (E-step then M-step) shared by every simulation that trains a PC model.

At the data, infer the free states (E-step); at the converged states, write the local-rule
gradients of the batch-mean free energy into ``.grad`` and let any ``torch.optim`` optimiser
take one step on theta (M-step, DESIGN.md §3). With a recogniser (hybrid PC) it is trained in
the same step to predict the converged states it just saw.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from cortex.inference import Beliefs, InferenceConfig, _run
from cortex.model import PCModel
from cortex.recognition import Recognizer


def learn_step(
    model: PCModel,
    optimizer: torch.optim.Optimizer,
    data: Mapping[str, Tensor],
    config: InferenceConfig = InferenceConfig(),
    *,
    recognizer: Recognizer | None = None,
    recognizer_optimizer: torch.optim.Optimizer | None = None,
) -> Beliefs:
    """Infer at ``data``, then one optimiser step on theta by the local rule; returns the beliefs.

    With ``config.compile`` on a CPU the local-rule gradients are computed in the compiled unit
    that runs inference (one graph for the whole E-step and the gradients of the M-step)."""
    beliefs, grads = _run(model, data, config, None, None, None, recognizer, rule=True)
    optimizer.zero_grad(set_to_none=True)
    if grads is None:
        model.accumulate_grads(beliefs.z, beliefs.drive, evaluation=beliefs.evaluation)
    else:
        for param, grad in zip(model.rule_parameters(), grads):
            param.grad = grad
    optimizer.step()
    if recognizer is not None and recognizer_optimizer is not None:
        recognizer_optimizer.zero_grad(set_to_none=True)
        recognizer.loss(model.to_dict(beliefs.z)).backward()
        recognizer_optimizer.step()
    return beliefs
