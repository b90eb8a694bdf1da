"""Reading a model as people write it: a module class with a ``forward``, BatchNorm, Dropout,
nested containers, residual adds, global average pooling.

The model is traced with ``torch.fx.symbolic_trace`` (never run on data, never modified) into
sslth's own graph (:mod:`sslth.graph`) of the operations it supports:

* ``nn.Linear`` and ``nn.Conv2d`` (the target's layers);
* ReLU: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``;
* Flatten: ``nn.Flatten``, ``torch.flatten(x, 1)``, ``x.flatten(1)``, ``x.view(x.size(0), -1)``,
  ``x.reshape(x.shape[0], -1)``, ``x.view(-1, size)``;
* ``nn.MaxPool2d`` / ``nn.AvgPool2d`` with kernel = stride (and their ``F.`` forms), and global
  average pooling: ``nn.AdaptiveAvgPool2d`` to a size that divides the map (1 in a ResNet),
  ``x.mean((2, 3))``;
* ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` (eval mode, running statistics), folded into the
  ``nn.Linear`` / ``nn.Conv2d`` before it in float64;
* ``nn.Dropout`` and ``nn.Identity`` (no-ops in eval mode);
* the sum of two branches (``a + b``, ``torch.add``, ``out += x``).

**Training mode.** A model whose BatchNorm or Dropout is in training mode computes another
function (batch statistics, random masks), so it is refused with a message saying to call
``.eval()``; nothing is switched on the caller's model. Modules whose forward does not depend on
the mode (Linear, Conv2d, ReLU, …) are read whatever their mode.

Anything else is refused with one line naming the operation, where it is (the module path or the
traced node) and the fix when there is one. After reading, the graph is evaluated in float64
against a float64 copy of the model on random inputs; a mismatch is refused too, so the target
certified is the function the model computes.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Sequence

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional

from sslth.errors import TargetError, UnsupportedTargetError
from sslth.graph import ADD, INPUT, LAYER, OP, Node
from sslth.kinds import LAYER_MODULES, kind_of_module
from sslth.modules import global_hook_problem, module_problem
from sslth.ops import AVGPOOL, FLATTEN, RELU, Op, op_of_module

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_LEAVES = (
    nn.Linear,
    nn.Conv2d,
    nn.ReLU,
    nn.Flatten,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
    *_NORMS,
    *_DROPOUTS,
)
_RELU_CALLS = (functional.relu, torch.relu, torch.relu_, functional.relu_)
_ADD_CALLS = (operator.add, operator.iadd, torch.add)
_NOT_RELU = {
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "gelu": "gelu",
    "silu": "silu",
    "elu": "elu",
    "leaky_relu": "leaky_relu",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "softplus": "softplus",
    "relu6": "relu6",
    "hardtanh": "hardtanh",
    "mish": "mish",
    "selu": "selu",
    "celu": "celu",
    "hardswish": "hardswish",
    "prelu": "prelu",
}
_OTHER_NORMS = ("LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "LocalResponseNorm")
_LAYER_LIST_HINT = "give the target as an nn.Sequential or a list of (weight, bias) layers instead"


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with sslth's supported modules (subclasses included, checked later)
    kept as single calls."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _LEAVES) or super().is_leaf_module(module, qualified_name)


def needs_trace(model: nn.Sequential) -> bool:
    """Whether a ``nn.Sequential`` holds modules only the tracer reads (BatchNorm, Dropout,
    Identity, global pooling, nested containers)."""
    traced_only = (*_NORMS, *_DROPOUTS, nn.Identity, nn.AdaptiveAvgPool2d, nn.Sequential)
    return any(isinstance(module, traced_only) for module in model)


def _where(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module '{node.target}'"
    stack = node.meta.get("nn_module_stack") or {}
    inside = list(stack)[-1] if stack else ""
    return f"node '{node.name}'" + (f" in '{inside}'" if inside else "")


def _function_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


class _Reader:
    """Builds sslth's graph from an fx graph, node by node."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...] | None) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.input_shape = input_shape
        self.nodes: list[Node] = []
        self.shapes: list[tuple[int, ...]] = []
        self.layers: list = []
        # the fx node whose value is each layer's output (the layer, or the last BatchNorm
        # folded into it): a BatchNorm folds only when it reads that node and nothing else does
        self.layer_sources: list[fx.Node] = []
        self.env: dict[fx.Node, tuple] = {}  # fx node -> ("tensor", index) | ("batch",) | int…

    # ------------------------------------------------------------------ helpers
    def add_node(self, node: Node, shape: tuple[int, ...]) -> tuple:
        self.nodes.append(node)
        self.shapes.append(shape)
        return ("tensor", len(self.nodes) - 1)

    def tensor(self, value, fx_node: fx.Node) -> int:
        entry = self.env.get(value) if isinstance(value, fx.Node) else None
        if entry is None or entry[0] != "tensor":
            raise UnsupportedTargetError(
                f"{_where(fx_node)} ({_function_name(fx_node)}): an input is not a tensor the "
                "network computes (constants and parameters used in forward are not supported)"
            )
        return entry[1]

    def op(self, op: Op, source: int, fx_node: fx.Node) -> tuple:
        try:
            shape = op.out_shape(self.shapes[source])
        except ValueError as error:
            raise TargetError(f"{_where(fx_node)}: {error} (check input_shape)") from None
        return self.add_node(Node(OP, (source,), op=op, name=_where(fx_node)), shape)

    # ------------------------------------------------------------------ nodes
    def read(self, graph: fx.Graph) -> None:
        for fx_node in graph.nodes:
            if fx_node.op == "placeholder":
                self.placeholder(fx_node)
            elif fx_node.op == "call_module":
                self.env[fx_node] = self.call_module(fx_node)
            elif fx_node.op in ("call_function", "call_method"):
                self.env[fx_node] = self.call_function(fx_node)
            elif fx_node.op == "get_attr":
                raise UnsupportedTargetError(
                    f"the forward uses the tensor '{fx_node.target}' directly: only the "
                    "supported modules' own parameters can be read"
                )
            elif fx_node.op == "output":
                result = fx_node.args[0]
                if not isinstance(result, fx.Node) or self.env[result][0] != "tensor":
                    raise UnsupportedTargetError(
                        "the forward must return one tensor (not a tuple, dict or constant)"
                    )
                index = self.env[result][1]
                if index == 0:
                    raise TargetError("the model returns its input: it has no layer")
                if index != len(self.nodes) - 1:
                    raise UnsupportedTargetError(
                        f"the forward computes values after its output ({self.nodes[-1].name}) "
                        "that it does not return; remove them"
                    )

    def size(self, index: int) -> int:
        return math.prod(self.shapes[index])

    def placeholder(self, fx_node: fx.Node) -> None:
        if self.nodes:
            raise UnsupportedTargetError(
                f"the forward takes more than one input ('{fx_node.name}'): one tensor is supported"
            )
        shape = self.input_shape
        if shape is None:
            first = next(iter(fx_node.users), None)
            module = self.modules.get(first.target) if first is not None else None
            if first is None or first.op != "call_module" or not isinstance(module, nn.Linear):
                raise TargetError(
                    "input_shape=(C, H, W) is required: the model does not start with an "
                    "nn.Linear, so the shape of one example cannot be read from it"
                )
            shape = (module.in_features,)
        self.env[fx_node] = self.add_node(Node(INPUT, name="input"), tuple(shape))

    def call_module(self, fx_node: fx.Node) -> tuple:
        module = self.modules[fx_node.target]
        name = f"module '{fx_node.target}' ({type(module).__name__})"
        base = next((t for t in _LEAVES if isinstance(module, t)), None)
        if base is None:
            raise UnsupportedTargetError(f"{name}: {_unsupported_module(module)}")
        problem = module_problem(module, (base,))
        if problem:
            raise UnsupportedTargetError(
                f"{name} {problem}: the model would not compute what its weights say"
            )
        if len(fx_node.args) != 1 or fx_node.kwargs:
            raise UnsupportedTargetError(f"{name}: called with more than one input")
        source = self.tensor(fx_node.args[0], fx_node)
        if isinstance(module, (nn.Identity, *_DROPOUTS)):
            if isinstance(module, _DROPOUTS) and module.training:
                raise UnsupportedTargetError(
                    f"{name} is in training mode (it drops values at random): call "
                    "model.eval() first"
                )
            return ("tensor", source)
        if isinstance(module, _NORMS):
            return self.batch_norm(module, name, fx_node, source)
        if isinstance(module, LAYER_MODULES):
            return self.layer(module, fx_node, source)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self.adaptive_pool(module.output_size, source, fx_node)
        if isinstance(module, nn.ReLU):
            self.check_in_place(module.inplace, fx_node)
        op = op_of_module(module)
        if isinstance(op, str):
            raise UnsupportedTargetError(f"{name}: {op}")
        return self.op(op, source, fx_node)

    def layer(self, module: nn.Module, fx_node: fx.Node, source: int) -> tuple:
        from sslth.target import _read_layer

        kind_of_module(module).check_module(module, f"'{fx_node.target}'")
        layer = _read_layer(
            module, f"'{fx_node.target}'", self.shapes[source], len(self.layers) + 1
        )
        self.layers.append(layer)
        self.layer_sources.append(fx_node)
        node = Node(LAYER, (source,), layer=len(self.layers) - 1, name=_where(fx_node))
        return self.add_node(node, layer.out_shape)

    def batch_norm(self, module, name: str, fx_node: fx.Node, source: int) -> tuple:
        node = self.nodes[source]
        if (
            node.kind != LAYER
            or fx_node.args[0] is not self.layer_sources[node.layer]
            or len(self.layer_sources[node.layer].users) != 1
        ):
            raise UnsupportedTargetError(
                f"{name}: sslth folds a BatchNorm into the nn.Linear / nn.Conv2d just before it, "
                "and this one does not directly follow one whose output nothing else uses"
            )
        if module.training:
            raise UnsupportedTargetError(
                f"{name} is in training mode (it normalizes by batch statistics): call "
                "model.eval() first, so that it uses its running statistics and can be folded"
            )
        from sslth.fold import fold_batch_norm

        self.layers[node.layer] = fold_batch_norm(self.layers[node.layer], module, name)
        self.layer_sources[node.layer] = fx_node  # a second BatchNorm folds on top of this one
        return ("tensor", source)

    def adaptive_pool(self, output_size, source: int, fx_node: fx.Node) -> tuple:
        shape = self.shapes[source]
        if len(shape) != 3:
            raise TargetError(f"{_where(fx_node)}: adaptive pooling needs (C, H, W), got {shape}")
        size = (output_size, output_size) if not isinstance(output_size, Sequence) else output_size
        size = tuple(shape[1 + i] if s is None else int(s) for i, s in enumerate(size))
        if any(h % s for h, s in zip(shape[1:], size, strict=True)):
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: adaptive average pooling of a {shape[1:]} map to {size} has "
                "overlapping windows; only output sizes that divide the map (e.g. 1) are supported"
            )
        kernel = tuple(h // s for h, s in zip(shape[1:], size, strict=True))
        return self.op(Op(AVGPOOL, kernel), source, fx_node)

    def check_in_place(self, in_place: bool, fx_node: fx.Node) -> None:
        source = fx_node.args[0]
        if in_place and isinstance(source, fx.Node) and len(source.users) > 1:
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: an in-place operation on a value that is also used "
                "elsewhere; use the out-of-place form (inplace=False)"
            )

    # ------------------------------------------------------------------ functions
    def call_function(self, fx_node: fx.Node) -> tuple:
        target, args, kwargs = fx_node.target, fx_node.args, fx_node.kwargs
        name = _function_name(fx_node)
        method = fx_node.op == "call_method"
        if method and name in ("size", "dim") or target is getattr:
            return self.size_of(fx_node)
        if target in (operator.getitem, operator.mul, operator.floordiv):
            return self.arithmetic(fx_node)
        if target in _RELU_CALLS or (method and name in ("relu", "relu_")):
            in_place = name.endswith("_") or bool(kwargs.get("inplace", False))
            self.check_in_place(in_place, fx_node)
            return self.op(Op(RELU), self.tensor(args[0], fx_node), fx_node)
        if target in _ADD_CALLS or (method and name == "add"):
            return self.add(fx_node)
        if target is torch.flatten or (method and name == "flatten"):
            return self.flatten(fx_node)
        if method and name in ("view", "reshape") or target is torch.reshape:
            return self.view(fx_node)
        if target is torch.mean or (method and name == "mean"):
            return self.mean(fx_node)
        if target is functional.adaptive_avg_pool2d:
            return self.adaptive_pool(args[1], self.tensor(args[0], fx_node), fx_node)
        if target in (functional.max_pool2d, functional.avg_pool2d):
            module_class = nn.MaxPool2d if target is functional.max_pool2d else nn.AvgPool2d
            op = op_of_module(module_class(*args[1:], **kwargs))
            if isinstance(op, str):
                raise UnsupportedTargetError(f"{_where(fx_node)} ({name}): {op}")
            return self.op(op, self.tensor(args[0], fx_node), fx_node)
        if target is functional.dropout or (method and name == "dropout"):
            if kwargs.get("training", args[2] if len(args) > 2 else True):
                raise UnsupportedTargetError(
                    f"{_where(fx_node)}: F.dropout with training=True drops values at random; "
                    "pass training=self.training and call model.eval() first"
                )
            return ("tensor", self.tensor(args[0], fx_node))
        if method and name in ("contiguous", "clone", "detach"):
            return ("tensor", self.tensor(args[0], fx_node))
        raise UnsupportedTargetError(f"{_where(fx_node)}: {_unsupported_function(name)}")

    def size_of(self, fx_node: fx.Node) -> tuple:
        args = fx_node.args
        if fx_node.target is getattr and args[1] != "shape":
            raise UnsupportedTargetError(f"{_where(fx_node)}: reads .{args[1]} of a tensor")
        index = self.tensor(args[0], fx_node)
        sizes = ("batch", *self.shapes[index])
        if _function_name(fx_node) == "dim":
            return ("int", len(sizes))
        if fx_node.op == "call_method" and len(args) > 1:
            return _size_entry(sizes, args[1])
        return ("sizes", sizes)

    def arithmetic(self, fx_node: fx.Node) -> tuple:
        left, right = (self.value(a, fx_node) for a in fx_node.args[:2])
        if fx_node.target is operator.getitem and left[0] == "sizes" and right[0] == "int":
            return _size_entry(left[1], right[1])
        if left[0] == right[0] == "int" and fx_node.target is not operator.getitem:
            return ("int", fx_node.target(left[1], right[1]))
        raise UnsupportedTargetError(
            f"{_where(fx_node)} ({_function_name(fx_node)}): arithmetic on tensors other than "
            "adding two branches is not supported"
        )

    def value(self, arg, fx_node: fx.Node) -> tuple:
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, int) and not isinstance(arg, bool):
            return ("int", arg)
        raise UnsupportedTargetError(f"{_where(fx_node)}: unsupported argument {arg!r}")

    def add(self, fx_node: fx.Node) -> tuple:
        args = fx_node.args
        if len(args) != 2 or set(fx_node.kwargs) - {"alpha"} or fx_node.kwargs.get("alpha", 1) != 1:
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: only the plain sum of two branches (a + b) is supported"
            )
        if not all(isinstance(a, fx.Node) and self.env[a][0] == "tensor" for a in args):
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: adds a constant to a tensor; only the sum of two branches "
                "of the network is supported"
            )
        first, second = (self.tensor(a, fx_node) for a in args)
        if self.shapes[first] != self.shapes[second]:
            raise TargetError(
                f"{_where(fx_node)}: residual add of mismatched shapes {self.shapes[first]} and "
                f"{self.shapes[second]} (broadcasting is not supported)"
            )
        node = Node(ADD, (first, second), name=_where(fx_node))
        return self.add_node(node, self.shapes[first])

    def flatten(self, fx_node: fx.Node) -> tuple:
        args, kwargs = fx_node.args, fx_node.kwargs
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        source = self.tensor(args[0], fx_node)
        if start != 1 or end not in (-1, len(self.shapes[source])):
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: flatten(start_dim={start}, end_dim={end}); only flattening "
                "everything but the batch (torch.flatten(x, 1)) is supported"
            )
        return self.op(Op(FLATTEN), source, fx_node)

    def view(self, fx_node: fx.Node) -> tuple:
        args = list(fx_node.args)
        source = self.tensor(args[0], fx_node)
        sizes = args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = list(sizes[0])
        if "shape" in fx_node.kwargs:
            sizes = list(fx_node.kwargs["shape"])
        entries = [self.value(s, fx_node) for s in sizes]
        size = self.size(source)
        batch_first = len(entries) == 2 and entries[0][0] == "batch"
        if batch_first and entries[1][0] == "int" and entries[1][1] in (-1, size):
            return self.op(Op(FLATTEN), source, fx_node)
        if len(entries) == 2 and entries[0] == ("int", -1) and entries[1] == ("int", size):
            return self.op(Op(FLATTEN), source, fx_node)
        raise UnsupportedTargetError(
            f"{_where(fx_node)}: {_function_name(fx_node)} to {sizes} is not a flatten of each "
            f"example ({self.shapes[source]}); only x.view(x.size(0), -1) and its spellings are "
            "supported"
        )

    def mean(self, fx_node: fx.Node) -> tuple:
        args, kwargs = fx_node.args, fx_node.kwargs
        source = self.tensor(args[0], fx_node)
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        shape = self.shapes[source]
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if (
            len(shape) != 3
            or sorted(d % 4 for d in dims) != [2, 3]
            or set(kwargs)
            - {
                "dim",
                "keepdim",
            }
        ):
            raise UnsupportedTargetError(
                f"{_where(fx_node)}: mean over dims {dims} of a {shape} example; only the mean "
                "over the spatial dims of a (C, H, W) map (x.mean((2, 3))) is supported"
            )
        pooled = self.op(Op(AVGPOOL, shape[1:]), source, fx_node)
        return pooled if keep else self.op(Op(FLATTEN), pooled[1], fx_node)


def _size_entry(sizes: tuple, index) -> tuple:
    entry = sizes[index]
    return ("batch",) if entry == "batch" else ("int", int(entry))


def _unsupported_module(module: nn.Module) -> str:
    cls = type(module).__name__
    lowered = cls.lower()
    if lowered in _NOT_RELU or lowered in {"logsoftmax", "leakyrelu", "hardswish"}:
        return (
            f"`{lowered}` is not a ReLU network: sslth certifies networks whose activation is ReLU"
        )
    if cls in _OTHER_NORMS:
        return (
            f"{cls} is not supported: it normalizes each example by its own statistics, which "
            "is not a fixed affine map (BatchNorm in eval mode is)"
        )
    return (
        f"{cls} is not supported (supported: Linear, Conv2d, ReLU, BatchNorm1d/2d, pooling, "
        "Flatten, Dropout, Identity and residual adds)"
    )


def _unsupported_function(name: str) -> str:
    if name.lower() in _NOT_RELU:
        return f"`{name}` is not a ReLU network: sslth certifies networks whose activation is ReLU"
    if name in ("layer_norm", "group_norm", "instance_norm"):
        return f"{name} is not supported: it is not a fixed affine map"
    if name in ("cat", "stack", "concat"):
        return f"`{name}` (concatenation) is not supported; residual adds are"
    return (
        f"`{name}` is not supported (supported: Linear, Conv2d, ReLU, BatchNorm, pooling, "
        "Flatten, Dropout, Identity and residual adds)"
    )


def _check_hooks(model: nn.Module) -> None:
    """Hooks and instance forwards on the modules the tracer goes through (they would run in
    the model but not in the trace)."""
    problem = global_hook_problem()
    if problem:
        raise UnsupportedTargetError(f"the target cannot be certified: {problem}")
    for path, module in model.named_modules():
        if isinstance(module, _LEAVES):
            continue  # checked as the trace reaches it, against its base class
        problem = module_problem(module, (type(module),))
        if problem:
            where = f"module '{path}'" if path else f"the model ({type(model).__name__})"
            raise UnsupportedTargetError(
                f"{where} {problem}: its forward may differ from what its code says"
            )


def trace(model: nn.Module, input_shape: Sequence[int] | None):
    """The :class:`~sslth.target.Target` of ``model`` (see the module docstring): a chain target
    when the model is a plain chain, a graph target otherwise.

    Raises:
        TargetError: bad values or shapes, naming the module.
        UnsupportedTargetError: an operation sslth does not support, naming it and where it is.
    """
    from sslth.target import Target, chain_of

    _check_hooks(model)
    shape = None if input_shape is None else tuple(int(s) for s in input_shape)
    if shape is not None and (not shape or min(shape) < 1):
        raise TargetError(f"input_shape must be positive sizes, got {tuple(input_shape)}")
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # noqa: BLE001  (any failure of tracing gets the same advice)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsupportedTargetError(
            f"the forward of {type(model).__name__} cannot be traced by torch.fx ({first}); "
            f"data-dependent control flow is not supported: {_LAYER_LIST_HINT}"
        ) from None
    reader = _Reader(model, shape)
    reader.read(graph)
    if not reader.layers:
        raise TargetError("the target has no nn.Linear or nn.Conv2d layer")
    nodes, layers = tuple(reader.nodes), tuple(reader.layers)
    target = chain_of(nodes, layers, reader.shapes[0])
    if target is None:
        target = Target(layers, (), reader.shapes[0], nodes)
    _check_matches_model(target, model)
    return target


def _check_matches_model(target, model: nn.Module) -> None:
    """Evaluate the read target and a float64 copy of the model on the same random inputs; a
    difference beyond rounding means the trace missed something, and is refused."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, *target.input_shape, generator=generator, dtype=torch.float64)
    x = torch.cat([torch.zeros(1, *target.input_shape, dtype=torch.float64), x])
    try:
        twin = copy.deepcopy(model).to(dtype=torch.float64, device="cpu")
        with torch.no_grad():
            expected = twin(x).reshape(x.shape[0], -1)
    except Exception as error:  # noqa: BLE001
        raise TargetError(
            f"the model does not run on inputs of shape {tuple(target.input_shape)} "
            f"({str(error).strip().splitlines()[0] if str(error).strip() else error}); "
            "check input_shape"
        ) from None
    with torch.no_grad():
        computed = target.forward(x.reshape(x.shape[0], -1))
    if expected.shape != computed.shape:
        raise UnsupportedTargetError(
            f"the traced graph gives {tuple(computed.shape)} outputs where the model gives "
            f"{tuple(expected.shape)}: {_LAYER_LIST_HINT}"
        )
    scale = 1.0 + float(expected.abs().max())
    gap = float((expected - computed).abs().max())
    if not gap <= 1e-9 * scale:
        raise UnsupportedTargetError(
            f"the traced graph differs from the model's own forward by {gap:.3g} on random "
            f"inputs, so sslth would certify another function: {_LAYER_LIST_HINT}"
        )
