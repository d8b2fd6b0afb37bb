"""cortex — the generative model on a DAG of cortical columns, inference and local learning.

Each node is a column that predicts its children; states are inferred by local error-driven
updates (the E-step) and weights learned by local rules (the M-step). Temporal columns also
predict from their own past and from the last action (the efference copy). See DESIGN.md §2–4.
:mod:`cortex.laplace` gives a temporal column a Gaussian posterior (filter, smoother, EM).
"""
from cortex.activations import ACTIVATIONS, Activation, get_activation
from cortex.graph import GraphSpec, NodeSpec, chain, from_config, from_networkx, sheet
from cortex.inference import Beliefs, InferenceConfig, InferenceDivergedError, infer
from cortex.laplace import GaussianPath, expected_free_energy, laplace_filter, learn_sequences_laplace
from cortex.learning import learn_step
from cortex.model import Evaluation, PCModel
from cortex.recognition import Recognizer
from cortex.temporal import Trajectory, learn_sequences, rollout, run_sequence

__all__ = [
    "ACTIVATIONS", "Activation", "Beliefs", "Evaluation", "GaussianPath", "GraphSpec", "InferenceConfig",
    "InferenceDivergedError", "NodeSpec", "PCModel", "Recognizer", "Trajectory", "chain",
    "expected_free_energy", "from_config", "from_networkx", "get_activation", "infer", "laplace_filter",
    "learn_sequences", "learn_sequences_laplace", "learn_step", "rollout", "run_sequence", "sheet",
]
