"""Graph validation: every bad graph is a ValueError that names the culprit."""
from __future__ import annotations

import json

import networkx as nx
import pytest

from cortex import PCModel, from_config, from_networkx


def _graph(**overrides) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("top", dim=3)
    g.add_node("x", dim=4, kind="observed")
    g.add_edge("top", "x")
    for name, attrs in overrides.items():
        g.nodes[name].update(attrs)
    return g


def test_cycle_is_named() -> None:
    g = _graph()
    g.add_node("mid", dim=2)
    g.add_edges_from([("x", "mid"), ("mid", "top")])
    with pytest.raises(ValueError, match="acyclic.*cycle"):
        from_networkx(g)


def test_missing_dimension_is_named() -> None:
    g = _graph()
    del g.nodes["top"]["dim"]
    with pytest.raises(ValueError, match="node 'top' has no dimension"):
        from_networkx(g)


def test_observed_without_parent_is_named() -> None:
    g = nx.DiGraph()
    g.add_node("x", dim=2, kind="observed")
    with pytest.raises(ValueError, match="observed node 'x' has no parent"):
        from_networkx(g)


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"kind": "latent"}, "node 'top': kind must be one of"),
        ({"activation": "swish"}, "node 'top': unknown activation 'swish'"),
        ({"dim": 0}, "node 'top': dim must be a positive int"),
        ({"precision": -1.0}, "node 'top': precision must be a positive"),
        ({"colour": "red"}, r"node 'top': unknown attribute\(s\) \['colour'\]"),
        ({"action": True}, "node 'top' takes the action as input but the model has action_dim=0"),
    ],
)
def test_bad_node_attributes(attrs, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_networkx(_graph(top=attrs))


def test_input_node_cannot_have_parents() -> None:
    with pytest.raises(ValueError, match="input node 'x' has parents"):
        from_networkx(_graph(x={"kind": "input"}))


def test_config_file_round_trip(tmp_path) -> None:
    config = {
        "action_dim": 2, "temporal": True,
        "nodes": {"top": {"dim": 3, "activation": "tanh"}, "x": {"dim": 4, "kind": "observed"}},
        "edges": [["top", "x"]],
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    spec = from_config(path)
    assert spec.names == ("top", "x")
    assert spec.node("top").temporal and spec.node("top").action
    assert not spec.node("x").temporal
    model = PCModel(spec)
    assert model.temporal_weight("top").shape == (3, 3)
    assert model.action_weight("top").shape == (3, 2)


def test_config_edge_to_unknown_node() -> None:
    with pytest.raises(ValueError, match="unknown node 'ghost'"):
        from_config({"nodes": {"a": {"dim": 1}}, "edges": [["a", "ghost"]]})


def test_same_shape_columns_share_one_batched_edge_group() -> None:
    g = nx.DiGraph()
    for name in "abcd":
        g.add_node(name, dim=5, activation="tanh")
    g.nodes["d"]["kind"] = "observed"
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "d"), ("a", "c")])
    model = PCModel(g)
    assert len(model.groups) == 1
    assert len(model.edge_groups) == 1 and len(model.edge_groups[0].edges) == 4
