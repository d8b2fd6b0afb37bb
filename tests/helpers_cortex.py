"""Random DAGs for property tests of the cortex kernel."""
from __future__ import annotations

import random

import networkx as nx


def random_dag(seed: int, n_nodes: int = 7, *, temporal: bool = False, action_dim: int = 0) -> nx.DiGraph:
    """A random DAG with skip edges, several parents, several observed leaves and roots.

    Dimensions repeat so that columns and edges share groups (exercising the batched kernel,
    including several edges into one child within a group).
    """
    rng = random.Random(seed)
    acts = ["identity", "tanh", "sigmoid", "leaky_relu", "softplus"]
    g = nx.DiGraph()
    names = [f"n{i}" for i in range(n_nodes)]
    for i, name in enumerate(names):
        g.add_node(name, dim=rng.choice([3, 3, 4, 5]), activation=rng.choice(acts),
                   output=rng.choice(["identity", "identity", "tanh"]),
                   learn_precision=True, precision=rng.uniform(0.5, 2.0))
    for j in range(1, n_nodes):
        parents = rng.sample(range(j), k=min(j, rng.choice([1, 1, 2, 3])))
        for i in parents:
            g.add_edge(names[i], names[j])
    leaves = [n for n in names if g.out_degree(n) == 0 and g.in_degree(n) > 0]
    for n in leaves:
        g.nodes[n]["kind"] = "observed"
    # One more observed node with two parents, so that several observations exist.
    g.add_node("obs", dim=4, kind="observed", precision=1.5, learn_precision=True)
    g.add_edge(names[0], "obs")
    g.add_edge(names[-1], "obs")
    # An input root that conditions one hidden column.
    g.add_node("inp", dim=3, kind="input", activation="tanh")
    g.add_edge("inp", names[1])
    return g


def diverging_model():
    """s -> x with a gain of 10 and a precise x: inference at lr 1 from zeros blows up at s."""
    import torch

    from cortex import PCModel

    g = nx.DiGraph()
    g.add_node("s", dim=2)
    g.add_node("x", dim=2, kind="observed", precision=1e3)
    g.add_edge("s", "x")
    model = PCModel(g)
    with torch.no_grad():
        model.weight("s", "x").copy_(torch.eye(2) * 10)
    return model
