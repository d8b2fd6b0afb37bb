"""Describe a generative model as a DAG of cortical columns and validate it once.

An edge ``p -> n`` of a ``networkx.DiGraph`` means column p predicts column n (DESIGN.md §2).
Each node carries a dimension, a kind (``hidden`` = inferred, ``observed`` = clamped data with
an energy term, ``input`` = clamped data without one), its activations and whether its
precision is learned. In a temporal model hidden nodes also predict from their own past (U)
and from the last action (B, the efference copy). This module turns such a graph, or a plain
config mapping describing one, into a frozen :class:`GraphSpec`; every check that can fail
does so here, naming the node, before any tensor exists.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import networkx as nx

from cortex.activations import ACTIVATIONS

NODE_KINDS = ("hidden", "observed", "input")


@dataclass(frozen=True)
class NodeSpec:
    """One cortical column."""

    name: str
    dim: int
    """Size d_n of the state z^n."""
    kind: str = "hidden"
    """``hidden`` (inferred), ``observed`` (clamped when data is given, energy term) or ``input``."""
    activation: str = "identity"
    """f: applied to this node's state wherever it predicts another node."""
    output: str = "identity"
    """g: applied to the summed input that forms this node's prediction mean mu_n."""
    precision: float = 1.0
    """Initial diagonal precision Sigma_n^-1 (all entries)."""
    learn_precision: bool = False
    """Learn the diagonal precision with the local rule (else it stays fixed)."""
    temporal: bool = False
    """Predict from the node's own previous state: U_n f(z_{t-1}^n)."""
    action: bool = False
    """Predict from the previous action (efference copy): B_n a_{t-1}."""

    @property
    def has_energy(self) -> bool:
        return self.kind != "input"


@dataclass(frozen=True)
class GraphSpec:
    """A validated model graph: nodes in topological order and edges (parent, child)."""

    nodes: tuple[NodeSpec, ...]
    edges: tuple[tuple[str, str], ...]
    action_dim: int = 0

    @cached_property
    def _by_name(self) -> dict[str, NodeSpec]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> NodeSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}; nodes are {[n.name for n in self.nodes]}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def parents(self, name: str) -> tuple[str, ...]:
        return tuple(p for p, c in self.edges if c == name)

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(c for p, c in self.edges if p == name)

    @property
    def is_temporal(self) -> bool:
        return any(n.temporal or n.action for n in self.nodes)

    @cached_property
    def _generations(self) -> tuple[tuple[str, ...], ...]:
        g = nx.DiGraph()
        g.add_nodes_from(self.names)
        g.add_edges_from(self.edges)
        order = {n: i for i, n in enumerate(self.names)}
        return tuple(
            tuple(sorted(gen, key=order.__getitem__)) for gen in nx.topological_generations(g)
        )

    def generations(self) -> tuple[tuple[str, ...], ...]:
        """Topological generations: every node's parents lie in earlier generations (computed once)."""
        return self._generations


_NODE_FIELDS = {f.name for f in fields(NodeSpec)} - {"name"}


def from_networkx(graph: nx.DiGraph, *, action_dim: int = 0, temporal: bool = False) -> GraphSpec:
    """Validate ``graph`` and freeze it into a :class:`GraphSpec`.

    Node attributes are the fields of :class:`NodeSpec` (``dim`` is required). With
    ``temporal=True`` hidden nodes default to ``temporal=True`` and, when ``action_dim > 0``,
    to ``action=True``; observed nodes take neither unless set (p(x_t | s_t^{P(0)})).
    """
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise ValueError(f"the model graph must be a networkx.DiGraph, got {type(graph).__name__}")
    if graph.number_of_nodes() == 0:
        raise ValueError("the model graph has no nodes")
    if not isinstance(action_dim, int) or action_dim < 0:
        raise ValueError(f"action_dim must be a non-negative int, got {action_dim!r}")
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        path = " -> ".join(str(e[0]) for e in cycle) + f" -> {cycle[0][0]}"
        raise ValueError(f"the model graph must be acyclic; found the cycle {path}")

    specs = {}
    for name, attrs in graph.nodes(data=True):
        specs[name] = _node_spec(name, dict(attrs), graph, action_dim, temporal)

    position = {n: i for i, n in enumerate(graph)}
    order = list(nx.lexicographical_topological_sort(graph, key=position.__getitem__))
    edges = tuple((p, c) for p, c in graph.edges())
    return GraphSpec(tuple(specs[n] for n in order), edges, action_dim)


def _node_spec(name: Any, attrs: dict, graph: nx.DiGraph, action_dim: int, temporal: bool) -> NodeSpec:
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"node name {name!r} must be a non-empty string without '/'")
    unknown = set(attrs) - _NODE_FIELDS
    if unknown:
        raise ValueError(
            f"node {name!r}: unknown attribute(s) {sorted(unknown)}; valid are {sorted(_NODE_FIELDS)}"
        )
    dim = attrs.get("dim")
    if dim is None:
        raise ValueError(f"node {name!r} has no dimension: give it a 'dim' attribute")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"node {name!r}: dim must be a positive int, got {dim!r}")
    kind = attrs.get("kind", "hidden")
    if kind not in NODE_KINDS:
        raise ValueError(f"node {name!r}: kind must be one of {NODE_KINDS}, got {kind!r}")
    for key in ("activation", "output"):
        if attrs.get(key, "identity") not in ACTIVATIONS:
            raise ValueError(
                f"node {name!r}: unknown {key} {attrs[key]!r}; choose one of {sorted(ACTIVATIONS)}"
            )
    precision = attrs.get("precision", 1.0)
    if not isinstance(precision, (int, float)) or not precision > 0:
        raise ValueError(f"node {name!r}: precision must be a positive number, got {precision!r}")
    n_parents = graph.in_degree(name)
    if kind == "observed" and n_parents == 0:
        raise ValueError(
            f"observed node {name!r} has no parent: an observation must be predicted by some node"
        )
    if kind == "input" and n_parents > 0:
        raise ValueError(
            f"input node {name!r} has parents {sorted(graph.predecessors(name))}: an input node "
            "has no energy term, so nothing can predict it (make it 'observed' instead)"
        )
    is_hidden = kind == "hidden"
    node_temporal = attrs.get("temporal", temporal and is_hidden)
    node_action = attrs.get("action", temporal and is_hidden and action_dim > 0)
    if kind == "input" and (node_temporal or node_action):
        raise ValueError(f"input node {name!r} cannot have a temporal or action term")
    if node_action and action_dim == 0:
        raise ValueError(f"node {name!r} takes the action as input but the model has action_dim=0")
    return NodeSpec(
        name=name,
        dim=dim,
        kind=kind,
        activation=attrs.get("activation", "identity"),
        output=attrs.get("output", "identity"),
        precision=float(precision),
        learn_precision=bool(attrs.get("learn_precision", False)),
        temporal=bool(node_temporal),
        action=bool(node_action),
    )


def from_config(config: Mapping[str, Any] | str | Path) -> GraphSpec:
    """Build a spec from a mapping, or a JSON/TOML file, describing the same graph.

    Layout::

        {"action_dim": 0, "temporal": false,
         "nodes": {"x": {"dim": 64, "kind": "input"}, "h": {"dim": 32, "activation": "tanh"}},
         "edges": [["x", "h"]]}
    """
    if isinstance(config, (str, Path)):
        config = read_config_file(config, "model config file")
    unknown = set(config) - {"nodes", "edges", "action_dim", "temporal"}
    if unknown:
        raise ValueError(
            f"model config: unknown key(s) {sorted(unknown)}; valid are action_dim, edges, nodes, temporal"
        )
    if "nodes" not in config:
        raise ValueError("model config: missing 'nodes'")
    g = nx.DiGraph()
    for name, attrs in config["nodes"].items():
        g.add_node(name, **(attrs or {}))
    for edge in config.get("edges", []):
        if len(edge) != 2:
            raise ValueError(f"model config: edge {edge!r} must be a [parent, child] pair")
        p, c = edge
        for end in (p, c):
            if end not in config["nodes"]:
                raise ValueError(f"model config: edge {p!r} -> {c!r} names unknown node {end!r}")
        g.add_edge(p, c)
    return from_networkx(
        g, action_dim=int(config.get("action_dim", 0)), temporal=bool(config.get("temporal", False))
    )


def read_config_file(path: str | Path, what: str = "config file") -> dict:
    """A JSON or TOML file (by suffix) as a dict; errors name the file and what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ValueError(f"{what} {path}: unknown suffix {suffix!r}; use .json or .toml")
    text = path.read_text()
    try:
        data = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except ValueError as error:  # both JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"{what} {path} does not parse: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a table of key = value, not {type(data).__name__}")
    return data


def hidden_names(depth: int) -> list[str]:
    """Names of a stack of `depth` hidden columns, top first: ``s{depth}``, ..., ``s2``, ``s``
    (``s`` is the column that predicts the observation)."""
    return [f"s{depth - i}" if i < depth - 1 else "s" for i in range(depth)]


def sensory_chain(hidden: tuple[int, ...], obs_dim: int, *, activation: str,
                  state_precision: float, obs_precision: float, learn_precision: bool,
                  **hidden_attrs: Any) -> nx.DiGraph:
    """Hidden columns of widths `hidden` (top first, named by :func:`hidden_names`), each
    predicting the next, the last predicting the observed column ``x`` of `obs_dim`.
    `hidden_attrs` go to the hidden columns (e.g. ``temporal=False, action=False``)."""
    g = nx.DiGraph()
    names = hidden_names(len(hidden))
    for name, width in zip(names, hidden):
        g.add_node(name, dim=width, activation=activation, precision=state_precision,
                   learn_precision=learn_precision, **hidden_attrs)
    g.add_node("x", dim=obs_dim, kind="observed", precision=obs_precision,
               learn_precision=learn_precision)
    g.add_edges_from(zip(names, names[1:] + ["x"]))
    return g


def chain(dims: Mapping[str, int], *, top_kind: str = "hidden", bottom_kind: str = "observed",
          activation: str = "tanh", **node_attrs: Any) -> nx.DiGraph:
    """A hierarchical chain ``n_1 -> n_2 -> ... -> n_L`` (the classic PC network).

    ``dims`` maps node names, top first, to their dimensions. Hidden nodes get ``activation``;
    the top and bottom nodes get the given kinds and identity activation.
    """
    names = list(dims)
    if len(names) < 2:
        raise ValueError("a chain needs at least two nodes")
    g = nx.DiGraph()
    for i, name in enumerate(names):
        kind = top_kind if i == 0 else bottom_kind if i == len(names) - 1 else "hidden"
        act = "identity" if i in (0, len(names) - 1) else activation
        g.add_node(name, dim=dims[name], kind=kind, activation=act, **node_attrs)
    g.add_edges_from(zip(names[:-1], names[1:]))
    return g


def sheet(levels: Sequence[int], dim: int = 64, *, fan_in: int = 3, activation: str = "tanh",
          **node_attrs: Any) -> nx.DiGraph:
    """A cortical sheet: levels of same-size columns with local connectivity.

    ``levels`` gives the number of columns per level, top first; the bottom level is
    ``observed`` (the sensory sheet), the others ``hidden`` with ``activation``. Columns of a
    level sit evenly on a ring; each column below the top is predicted by the ``fan_in``
    columns of the level above nearest to it (fewer if that level is smaller). Column ``i``
    of level ``l`` is named ``L{l}_{i}``. Same-shape columns share one node group, so however
    many columns there are, an inference iteration is a few batched ops.

    >>> sheet((64, 192, 768)).number_of_nodes()   # a 1,024-column sheet
    1024
    """
    if len(levels) < 2 or any(not isinstance(n, int) or n < 1 for n in levels):
        raise ValueError(f"a sheet needs at least two levels of >= 1 columns, got {tuple(levels)}")
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    g = nx.DiGraph()
    for level, n in enumerate(levels):
        bottom = level == len(levels) - 1
        for i in range(n):
            g.add_node(f"L{level}_{i}", dim=dim, kind="observed" if bottom else "hidden",
                       activation="identity" if bottom else activation, **node_attrs)
    for level in range(1, len(levels)):
        above, here = levels[level - 1], levels[level]
        for i in range(here):
            x = (i + 0.5) / here
            ring = lambda j: min(abs((j + 0.5) / above - x), 1 - abs((j + 0.5) / above - x))
            for j in sorted(range(above), key=ring)[:fan_in]:
                g.add_edge(f"L{level - 1}_{j}", f"L{level}_{i}")
    return g
