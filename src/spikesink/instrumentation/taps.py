"""Taps: forward hooks on any set of (block, state) pairs, and edits of one state.

Every analysis sees hidden states through this module and nothing else registers hooks on a
decoder. A request is a (block, state) pair in the paper's numbering (see blocks.py for the
five states); the family layout says which module's input or output carries that state:

    state          hook point (sequential residual; see blocks.py for the parallel residual)
    input          input of the block's input norm (of the sublayer when it has no input norm)
    normed_input   output of the block's input norm (input of the sublayer when it has none,
                   or when one norm feeds both sublayers, Phi-1/2)
    raw_output     output of the attention / FFN module
    output         output of the block's output norm (= raw_output without one)
    post_residual  attention block: input of the FFN input norm (of the FFN without one);
                   FFN block: output of the decoder layer
                   (true post-norm, OPT-350m: the output of the norm applied to the residual
                   sum, N(x + Attn(x)): the stream the next block reads and adds to)

An FFN without a module of its own (OPT: fc1 / fc2 on the layer) is seen at its up projection's
input and its down projection's output; where the layer flattens the tokens around its FFN
((B * T, d), OPT) the taps and edits see (B, T, d) as everywhere else.

Usage, one context manager style for all:

    with Taps(model, [(4, "post_residual"), (4, "output")], on_state, stop_after_last=True):
        run_decoder(model, input_ids=ids)          # the LM head never runs; stops after block 4

    with edit_state(model, block=6, state="output", fn=lambda h: h * 0):   # an intervention
        model(input_ids=ids)

Hooks chain in the order contexts are entered: taps entered inside an edit see the edited state.
`stop_after_last` raises StopForward once every requested state of the forward was seen;
`run_decoder` catches it. States are passed on as the model computed them (dtype included);
detached (copied where the family's layer writes into them in place, Falcon). Callers reduce them to float32 statistics at once and keep nothing of size T x d.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import block_kind, check_state
from .layout import LayerView, model_layout

EDITABLE = ("normed_input", "raw_output", "output", "post_residual")


class StopForward(Exception):
    """Raised by a tap once every requested state has been seen; ends the forward early."""


class NotEditable(ValueError):
    """A state no hook can replace without changing what a different reader sees."""


def first_tensor(output) -> torch.Tensor:
    """Decoder layers and attention modules return a tensor or a tuple led by one."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _replace_first(output, tensor):
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    if isinstance(output, list):
        return [tensor, *output[1:]]
    return tensor


def _module_input(args, kwargs) -> torch.Tensor:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    raise RuntimeError("a tapped module was called without a hidden-state argument")


@dataclass(frozen=True)
class Point:
    """Where a state is seen: the input ('pre') or output ('post') of one module."""

    module: nn.Module
    phase: str  # "pre" | "post"
    path: str
    layer: int = -1  # index of the decoder layer it is in

    @property
    def key(self) -> tuple[int, str]:
        return id(self.module), self.phase


DERIVED = "derived"  # the parallel-residual attention post-residual: input + output


def resolve(lv: LayerView, block: int, state: str, attention: str = "self_attn", ffn: str = "mlp") -> Point | str:
    """The hook point of (block, state) in layer `lv` (or DERIVED). Module docstring for the table."""
    check_state(state)
    if block_kind(block) == "attn":
        norm_in, module, norm_out, name = lv.attn_input_norm, lv.attention, lv.attn_output_norm, attention
        exit_ = module
    else:
        norm_in, module, norm_out, name = lv.ffn_input_norm, lv.ffn_entry or lv.ffn, lv.ffn_output_norm, ffn
        exit_ = lv.ffn_exit or lv.ffn
    path = lv.path

    def pre(m, label):
        return Point(m, "pre", f"{path}.{label} (input)", lv.index)

    def post(m, label):
        return Point(m, "post", f"{path}.{label} (output)", lv.index)

    if state == "input":
        if block_kind(block) == "ffn" and not lv.parallel:
            return resolve(lv, block - 1, "post_residual", attention, ffn)
        return pre(norm_in, "input norm") if norm_in is not None else pre(module, name or "FFN input")
    if state == "normed_input":
        # one norm feeding both sublayers (Phi-1/2): its output is also the other sublayer's
        # input, so the sublayer's own input is the point (the same tensor; an edit stays local)
        shared = norm_in is not None and lv.attn_input_norm is lv.ffn_input_norm
        return post(norm_in, "input norm") if norm_in is not None and not shared else pre(module, name or "FFN input")
    if state == "raw_output":
        return post(exit_, name or "FFN output")
    if state == "output":
        return post(norm_out, "output norm") if norm_out is not None else post(exit_, name or "FFN output")
    # post_residual
    if block_kind(block) == "ffn":
        return post(lv.layer, "layer")
    if lv.attn_residual_norm is not None:  # true post-norm: the stream is N(x + Attn(x))
        return post(lv.attn_residual_norm, "attention residual norm")
    if lv.parallel:
        return DERIVED
    if lv.ffn_input_norm is not None:
        return pre(lv.ffn_input_norm, "FFN input norm")
    return pre(lv.ffn_entry or lv.ffn, ffn or "FFN input")


class Taps:
    """Call on_state(block, state, tensor) for each requested (block, state) during forwards."""

    def __init__(
        self,
        model: nn.Module,
        requests: Iterable[tuple[int, str]],
        on_state: Callable[[int, str, torch.Tensor], None],
        *,
        stop_after_last: bool = False,
    ):
        self.layout = model_layout(model)
        self.requests = sorted({(int(b), check_state(s)) for b, s in requests})
        if not self.requests:
            raise ValueError("no (block, state) requested")
        bad = [b for b, _ in self.requests if not 1 <= b <= self.layout.n_blocks]
        if bad:
            raise ValueError(f"blocks {sorted(set(bad))} are outside 1..{self.layout.n_blocks}")
        self.on_state = on_state
        self.stop_after_last = stop_after_last
        self._stack: contextlib.ExitStack | None = None
        self._pending: set = set()
        self._parallel_inputs: dict[int, torch.Tensor] = {}
        self._token_shape: dict[int, torch.Size] = {}  # per layer (B, T): flattened FFN states

    def _reset(self, *_):
        self._pending = set(self.requests)
        self._parallel_inputs = {}

    def _emit(self, block: int, state: str, tensor: torch.Tensor) -> None:
        self.on_state(block, state, tensor)
        if self._pending:
            self._pending.discard((block, state))
            if self.stop_after_last and not self._pending:
                raise StopForward

    def __enter__(self):
        a = self.layout.adapter
        by_point: dict[tuple[int, str], tuple[Point, list]] = {}
        for block, state in self.requests:
            lv = self.layout.layer_of(block)
            point = resolve(lv, block, state, a.attention, a.ffn)
            if point == DERIVED:  # needs the attention block's input and output
                for part in ("input", "output"):
                    p = resolve(lv, block, part, a.attention, a.ffn)
                    by_point.setdefault(p.key, (p, []))[1].append((block, f"_derived_{part}"))
                continue
            by_point.setdefault(point.key, (point, []))[1].append((block, state))
        stack = contextlib.ExitStack()
        try:
            stack.callback(self.layout.decoder.register_forward_pre_hook(self._reset).remove)
            if self.layout.adapter.flat_ffn:
                stack.enter_context(_token_shapes(self.layout, self._token_shape))
            for point, targets in by_point.values():
                stack.callback(self._register(point, targets).remove)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self._reset()
        return self

    def _register(self, point: Point, targets: list):
        copy = self.layout.adapter.copy_states

        def deliver(tensor):
            tensor = tensor.detach().clone() if copy else tensor.detach()
            if tensor.dim() == 2 and point.layer in self._token_shape:  # (B * T, d) -> (B, T, d)
                tensor = tensor.view(*self._token_shape[point.layer], -1)
            for block, state in targets:
                if state == "_derived_input":
                    self._parallel_inputs[block] = tensor
                elif state == "_derived_output":
                    self._emit(block, "post_residual", self._parallel_inputs.pop(block) + tensor)
                else:
                    self._emit(block, state, tensor)

        if point.phase == "pre":
            return point.module.register_forward_pre_hook(
                lambda m, args, kwargs: deliver(_module_input(args, kwargs)), with_kwargs=True
            )
        return point.module.register_forward_hook(lambda m, args, output: deliver(first_tensor(output)))

    def __exit__(self, *exc):
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
        return False


@contextlib.contextmanager
def edit_state(model: nn.Module, block: int, state: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace one block state by fn(state) in every forward inside the context.

    Editable: normed_input (only the sublayer reads it), raw_output and output (what is added)
    and the FFN block's post_residual (the layer output, read by everything after it). Not
    editable: input states (edit the previous block's post_residual) and the attention block's
    post_residual (in a sequential block it is read both by the FFN norm and by the residual
    add, and a hook sees only the first; with a parallel residual the model never forms it).
    """
    layout = model_layout(model)
    check_state(state)
    if state not in EDITABLE or (state == "post_residual" and block_kind(block) == "attn"):
        raise NotEditable(
            f"block {block} state {state!r} cannot be edited with a hook; editable: normed_input, raw_output, "
            "output, and post_residual of FFN (even) blocks"
        )
    a = layout.adapter
    point = resolve(layout.layer_of(block), block, state, a.attention, a.ffn)
    shapes: dict[int, torch.Size] = {}
    if a.flat_ffn:  # edit (B, T, d) where the layer flattens the tokens around its FFN (OPT)
        plain = fn

        def fn(h):
            if h.dim() != 2 or point.layer not in shapes:
                return plain(h)
            return plain(h.view(*shapes[point.layer], -1)).reshape(h.shape)

    if point.phase == "pre":

        def hook(_m, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        handle = point.module.register_forward_pre_hook(hook, with_kwargs=True)
    else:
        handle = point.module.register_forward_hook(
            lambda _m, _a, output: _replace_first(output, fn(first_tensor(output)))
        )
    try:
        with _token_shapes(layout, shapes) if a.flat_ffn else contextlib.nullcontext():
            yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _token_shapes(layout, shapes: dict[int, torch.Size]) -> Iterator[None]:
    """Pre-hooks that record each decoder layer's (B, T) in `shapes` (by layer index)."""
    with contextlib.ExitStack() as stack:
        for lv in layout.layers:

            def record(_m, args, kwargs, index=lv.index):
                shapes[index] = _module_input(args, kwargs).shape[:-1]

            stack.callback(lv.layer.register_forward_pre_hook(record, with_kwargs=True).remove)
        yield


def run_decoder(model: nn.Module, **inputs):
    """Run the decoder stack only (no LM head: no logits), without gradients; swallow StopForward.

    Returns the decoder's output, or None when a tap stopped the forward early.
    """
    decoder = model_layout(model).decoder
    with torch.inference_mode():
        try:
            return decoder(**inputs)
        except StopForward:
            return None


def capture(
    model: nn.Module,
    requests: Iterable[tuple[int, str]],
    stop: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **inputs,
) -> dict[tuple[int, str], torch.Tensor]:
    """One decoder forward; {(block, state): tensor (or transform(tensor))} for every request.

    With `stop` the forward ends after the last requested state. Use a transform (e.g. keep
    position 0 only, or cast to float32) to hold less than the full (B, T, d) states.
    """
    got: dict[tuple[int, str], torch.Tensor] = {}
    keep = transform or (lambda t: t)

    def record(block, state, tensor):
        got[(block, state)] = keep(tensor)

    with Taps(model, requests, record, stop_after_last=stop):
        run_decoder(model, **inputs)
    return got


def block_taps(
    model: nn.Module,
    blocks: Iterable[int],
    on_state: Callable[[int, torch.Tensor], None],
    state: str = "post_residual",
    stop_after_last: bool = True,
) -> Taps:
    """Taps of one state on several blocks, with on_state(block, tensor)."""
    return Taps(model, [(b, state) for b in blocks], lambda b, _s, t: on_state(b, t), stop_after_last=stop_after_last)


def module_inputs(modules: dict[str, nn.Module], on_input: Callable[[str, tuple, dict], None]) -> contextlib.ExitStack:
    """Pre-hooks that hand (name, args, kwargs) of named sub-modules (e.g. MoE experts: their
    routing arguments) to `on_input`; close the returned stack to remove them."""
    stack = contextlib.ExitStack()
    for name, module in modules.items():
        handle = module.register_forward_pre_hook(
            lambda m, args, kwargs, name=name: on_input(name, args, kwargs), with_kwargs=True
        )
        stack.callback(handle.remove)
    return stack


@contextlib.contextmanager
def edit_module_inputs(
    modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace the input x of named sub-modules (e.g. every Linear: layout.linear_modules) by
    fn(name, x) in every forward inside the context (fake quantisation of activations)."""
    stack = contextlib.ExitStack()

    def hook_for(name):
        def hook(_m, args, kwargs):
            if args:
                return (fn(name, args[0]), *args[1:]), kwargs
            return args, {**kwargs, "input": fn(name, kwargs["input"])}

        return hook

    with stack:
        for name, module in modules.items():
            stack.callback(module.register_forward_pre_hook(hook_for(name), with_kwargs=True).remove)
        yield
