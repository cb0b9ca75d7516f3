"""Native asl_edge ops against their pure-PyTorch references, op registration checks
(torch.library.opcheck, torch.export), and the ASL_EDGE_OPS switch."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import native_skip_reason

from asl_edge.ops import NativeOpsError, library, nms1d, nms1d_reference, tca_attention, tca_attention_reference
from asl_edge.postprocess import batched_nms_reference

pytestmark = pytest.mark.skipif(bool(native_skip_reason("cpu")), reason=native_skip_reason("cpu") or "built")


def random_qkv(batch, channels, length, lengths, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, channels, length, generator=g, dtype=dtype) for _ in range(3))
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return q, k, v, mask


SHAPES = [  # batch, heads, d, T, valid lengths
    (1, 1, 1, 1, [1]),
    (2, 2, 3, 2, [2, 1]),
    (1, 4, 8, 7, [7]),
    (3, 3, 5, 37, [37, 0, 12]),     # a fully padded item
    (2, 2, 16, 101, [101, 64]),     # T not a multiple of anything
    (1, 4, 32, 288, [250]),
]


@pytest.mark.parametrize("batch,heads,d,length,lengths", SHAPES)
@pytest.mark.parametrize("window,theta,scale", [(19, 0.2, "time"), (3, 0.0, "head"), (5, 1.0, "time"),
                                                (1, 0.2, "head"), (9, 0.5, "head")])
def test_tca_native_matches_reference(batch, heads, d, length, lengths, window, theta, scale):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        q, k, v, mask = random_qkv(batch, heads * d, length, lengths, seed=length + heads, dtype=dtype)
        got = torch.ops.asl_edge.tca_attention(q, k, v, mask, heads, window, theta, scale)
        want = tca_attention_reference(q, k, v, mask, heads, window, theta, scale)
        assert got.dtype == dtype and got.shape == want.shape
        assert torch.allclose(got, want, atol=tol, rtol=tol), (dtype, (got - want).abs().max())


def test_tca_native_accepts_non_contiguous_inputs():
    q, k, v, mask = random_qkv(2, 12, 30, [30, 21], seed=3)
    qt = q.transpose(1, 2).contiguous().transpose(1, 2)
    got = torch.ops.asl_edge.tca_attention(qt, k, v, mask, 3, 5, 0.2, "time")
    assert torch.allclose(got, tca_attention_reference(q, k, v, mask, 3, 5, 0.2, "time"), atol=2e-5)


def test_tca_native_gradients_pass_gradcheck():
    """Analytic gradients of the native op against finite differences (float64)."""
    q, k, v, mask = random_qkv(2, 4, 7, [7, 5], seed=4, dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_() for t in (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: torch.ops.asl_edge.tca_attention(a, b, c, mask, 2, 3, 0.3, "time"), inputs)


def test_tca_native_second_order_gradients():
    q, k, v, mask = random_qkv(1, 4, 9, [7], seed=18, dtype=torch.float64)
    results = []
    for fn in (torch.ops.asl_edge.tca_attention, tca_attention_reference):
        x = q.clone().requires_grad_()
        (grad,) = torch.autograd.grad(fn(x, k, v, mask, 2, 3, 0.4, "time").pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(grad.sum(), x)[0])
    assert torch.allclose(results[0], results[1], atol=1e-7)


@pytest.mark.parametrize("bad, message", [
    (dict(channel_scale="width"), "channel_scale"),
    (dict(num_heads=3), "multiple of num_heads"),
    (dict(window=4), "window must be odd"),
    (dict(theta=1.5), "theta"),
])
def test_tca_native_and_reference_reject_the_same_attributes(bad, message):
    q, k, v, mask = random_qkv(1, 8, 10, [10], seed=5)
    args = dict(num_heads=2, window=5, theta=0.2, channel_scale="time") | bad
    for fn in (torch.ops.asl_edge.tca_attention, tca_attention_reference):
        with pytest.raises((RuntimeError, ValueError), match=message):
            fn(q, k, v, mask, args["num_heads"], args["window"], args["theta"], args["channel_scale"])


def test_tca_native_rejects_bad_shapes():
    q, k, v, mask = random_qkv(1, 8, 10, [10], seed=6)
    with pytest.raises(RuntimeError, match="mask must be"):
        torch.ops.asl_edge.tca_attention(q, k, v, mask[:, :5], 2, 5, 0.2, "time")
    with pytest.raises(RuntimeError, match="mask must be bool"):
        torch.ops.asl_edge.tca_attention(q, k, v, mask.float(), 2, 5, 0.2, "time")
    with pytest.raises(RuntimeError, match="one shape"):
        torch.ops.asl_edge.tca_attention(q, k[..., :9], v, mask, 2, 5, 0.2, "time")


def test_opcheck_tca_attention():
    q, k, v, mask = random_qkv(2, 8, 12, [12, 7], seed=7)
    torch.library.opcheck(torch.ops.asl_edge.tca_attention.default, (q, k, v, mask, 2, 5, 0.2, "time"))
    grads = tuple(t.clone().requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.asl_edge.tca_attention.default, (*grads, mask, 2, 5, 0.2, "time"))


def test_opcheck_nms1d():
    segs, scores, labels = random_candidates(3, 40, seed=8)
    torch.library.opcheck(torch.ops.asl_edge.nms1d.default,
                          (segs, scores, labels, "soft", 0.1, 0.5, 0.001, 20, True, 0.0, 3))


def test_native_attention_in_torch_export_with_dynamic_length():
    q, k, v, mask = random_qkv(1, 8, 24, [20], seed=9)

    class Attention(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return tca_attention(q, k, v, mask, 2, 5, 0.2, "time")

    length = torch.export.Dim("length", min=2, max=4096)
    spec = {"q": {2: length}, "k": {2: length}, "v": {2: length}, "mask": {1: length}}
    program = torch.export.export(Attention(), (q, k, v, mask), dynamic_shapes=spec)
    assert "asl_edge.tca_attention" in str(program.graph)
    q2, k2, v2, mask2 = random_qkv(1, 8, 50, [31], seed=10)
    assert torch.allclose(program.module()(q2, k2, v2, mask2),
                          tca_attention_reference(q2, k2, v2, mask2, 2, 5, 0.2, "time"), atol=2e-5)


@torch.jit.script
def scripted_ops(q, k, v, mask, segments, scores, labels):
    f = torch.ops.asl_edge.tca_attention(q, k, v, mask, 2, 5, 0.2, "time")
    kept = torch.ops.asl_edge.nms1d(segments, scores, labels, "soft", 0.1, 0.5, 0.001, 10, True, 0.0, 3)
    return f, kept[0], kept[3]


def test_ops_callable_from_torchscript():
    q, k, v, mask = random_qkv(1, 8, 24, [20], seed=15)
    segs, scores, labels = random_candidates(3, 10, seed=15)
    f, kept, count = scripted_ops(q, k, v, mask, segs, scores, labels)
    assert torch.allclose(f, tca_attention_reference(q, k, v, mask, 2, 5, 0.2, "time"), atol=2e-5)
    want = nms1d_reference(segs, scores, labels, "soft", 0.1, 0.5, 0.001, 10, True, 0.0, 3)
    assert torch.equal(count, want[3]) and torch.allclose(kept, want[0])


@pytest.mark.slow
def test_native_attention_in_an_aot_inductor_package(tmp_path):
    """AOTInductor compiles a C++ package that calls the op through the dispatcher (~20 s)."""
    q, k, v, mask = random_qkv(1, 8, 24, [20], seed=16)

    class Attention(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return tca_attention(q, k, v, mask, 2, 5, 0.2, "time")

    program = torch.export.export(Attention(), (q, k, v, mask))
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "attention.pt2"))
    loaded = torch._inductor.aoti_load_package(package)
    assert torch.allclose(loaded(q, k, v, mask), tca_attention_reference(q, k, v, mask, 2, 5, 0.2, "time"),
                          atol=2e-5)


# ---------------------------------------------------------------- nms1d


def random_candidates(num_classes, per_class, seed, span=300.0, max_len=40.0):
    g = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    start = torch.rand(n, generator=g) * span
    segs = torch.stack([start, start + 0.5 + torch.rand(n, generator=g) * max_len], dim=1)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return segs, scores, labels


def assert_same_nms(got, want):
    count = int(want[3][0])
    assert int(got[3][0]) == count
    assert torch.equal(got[2], want[2])                      # labels, padding (-1) included
    assert torch.allclose(got[1], want[1], atol=1e-6, rtol=0)
    assert torch.allclose(got[0], want[0], atol=1e-4, rtol=1e-6)
    assert torch.equal(got[1][count:], torch.zeros_like(got[1][count:]))


MODES = list(itertools.product(["soft", "hard"], [True, False], [0.0, 0.7]))


@pytest.mark.parametrize("method,multiclass,voting", MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_native_matches_reference(method, multiclass, voting, seed):
    segs, scores, labels = random_candidates(4, 60, seed)
    for max_out in (200, 7):          # 200 > what survives; 7 truncates
        args = (method, 0.3, 0.5, 0.05, max_out, multiclass, voting, 4)
        assert_same_nms(torch.ops.asl_edge.nms1d(segs, scores, labels, *args),
                        nms1d_reference(segs, scores, labels, *args))


@pytest.mark.parametrize("method,multiclass,voting", MODES)
def test_nms_native_edge_cases(method, multiclass, voting):
    cases = {
        "empty": (torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long)),
        "single": (torch.tensor([[1.0, 4.0]]), torch.tensor([0.9]), torch.tensor([2])),
        "identical segments": (torch.tensor([[1.0, 4.0]] * 5), torch.tensor([0.5, 0.9, 0.9, 0.2, 0.9]),
                               torch.tensor([1, 1, 1, 1, 1])),
        "tied scores": (torch.tensor([[0.0, 3.0], [1.0, 4.0], [10.0, 12.0], [0.5, 3.5], [11.0, 12.0]]),
                        torch.full((5,), 0.5), torch.tensor([0, 0, 0, 1, 0])),
        "all below min_score": (torch.tensor([[0.0, 3.0], [5.0, 6.0]]), torch.tensor([0.01, 0.02]),
                                torch.tensor([0, 1])),
        "class 0 missing": (torch.tensor([[0.0, 3.0], [1.0, 4.0], [6.0, 9.0]]), torch.tensor([0.3, 0.8, 0.6]),
                            torch.tensor([2, 2, 3])),
    }
    for name, (segs, scores, labels) in cases.items():
        args = (method, 0.3, 0.5, 0.05, 3, multiclass, voting, 4)
        got = torch.ops.asl_edge.nms1d(segs, scores, labels, *args)
        assert_same_nms(got, nms1d_reference(segs, scores, labels, *args))
        assert got[0].shape == (3, 2) and got[3].dtype == torch.int32, name


def test_nms_hand_worked_example():
    """Gaussian soft-NMS by hand: A (0-10, 0.9) is kept; B (1-10, IoU 0.9) decays by exp(-0.81/0.5)
    = 0.198 to 0.158; C (20-30, 0.5) is untouched and ranks second."""
    segs = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    out_segs, out_scores, out_labels, count = nms1d(segs, scores, torch.zeros(3, dtype=torch.long), "soft",
                                                    sigma=0.5, min_score=0.001, max_out=5)
    assert int(count[0]) == 3
    iou = 9.0 / 10.0
    assert torch.allclose(out_scores[:3], torch.tensor([0.9, 0.5, 0.8 * torch.exp(torch.tensor(-iou * iou / 0.5))]),
                          atol=1e-5)
    assert torch.equal(out_segs[:3], segs[[0, 2, 1]])
    assert torch.equal(out_labels, torch.tensor([0, 0, 0, -1, -1]))


def test_nms_native_ignores_labels_outside_num_classes():
    segs, scores, labels = random_candidates(3, 20, seed=11)
    got = torch.ops.asl_edge.nms1d(segs, scores, labels, "soft", 0.1, 0.5, 0.001, 50, True, 0.0, 2)
    assert_same_nms(got, nms1d_reference(segs, scores, labels, "soft", 0.1, 0.5, 0.001, 50, True, 0.0, 2))
    assert int((got[2] == 2).sum()) == 0


def test_nms_native_rejects_bad_arguments():
    segs, scores, labels = random_candidates(2, 5, seed=12)
    with pytest.raises(RuntimeError, match="method must be"):
        torch.ops.asl_edge.nms1d(segs, scores, labels, "fuzzy", 0.1, 0.5, 0.001, 5, True, 0.0, 2)
    with pytest.raises(RuntimeError, match="max_out must be positive"):
        torch.ops.asl_edge.nms1d(segs, scores, labels, "soft", 0.1, 0.5, 0.001, 0, True, 0.0, 2)
    with pytest.raises(RuntimeError, match="segments must be"):
        torch.ops.asl_edge.nms1d(segs[:, :1], scores, labels, "soft", 0.1, 0.5, 0.001, 5, True, 0.0, 2)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.asl_edge.nms1d(segs.double(), scores, labels, "soft", 0.1, 0.5, 0.001, 5, True, 0.0, 2)


def test_batched_nms_dispatches_to_the_same_result(monkeypatch):
    from asl_edge.postprocess import batched_nms

    monkeypatch.setenv("ASL_EDGE_OPS", "native")
    segs, scores, labels = random_candidates(5, 100, seed=13)
    for soft, multiclass in itertools.product([True, False], [True, False]):
        got = batched_nms(segs, scores, labels, 0.3, 0.001, 30, soft, multiclass, 0.5, 0.75)
        want = batched_nms_reference(segs, scores, labels, 0.3, 0.001, 30, soft, multiclass, 0.5, 0.75)
        assert torch.equal(got[2], want[2])
        assert torch.allclose(got[1], want[1], atol=1e-6) and torch.allclose(got[0], want[0], atol=1e-4)


@pytest.mark.parametrize("case", ["negative labels", "huge label", "int16 labels", "max_seg_num 0",
                                  "max_seg_num -1"])
def test_batched_nms_falls_back_where_the_native_op_does_not_apply(case):
    from asl_edge.postprocess import batched_nms

    segs, scores, labels = random_candidates(3, 20, seed=17)
    max_seg_num = 30
    if case == "negative labels":
        labels = labels - 1
    elif case == "huge label":
        labels[0] = 2 ** 40
    elif case == "int16 labels":
        labels = labels.to(torch.int16)
    else:
        max_seg_num = int(case.split()[-1])
    got = batched_nms(segs, scores, labels, 0.3, 0.001, max_seg_num, True, True, 0.5, 0.75)
    want = batched_nms_reference(segs, scores, labels, 0.3, 0.001, max_seg_num, True, True, 0.5, 0.75)
    assert got[2].dtype == labels.dtype
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- ASL_EDGE_OPS


@pytest.fixture
def fresh_library_state(monkeypatch):
    """Let a test change ASL_EDGE_OPS / ASL_EDGE_NATIVE_DIR and reload the library state."""
    monkeypatch.setattr(library, "_state", None)
    yield monkeypatch


def attention_inputs(dtype=torch.float32, mask_dtype=torch.bool):
    data = torch.zeros(1, 2, 3, dtype=dtype)
    return data, data, data, torch.ones(1, 3, dtype=mask_dtype)


def nms_inputs(dtype=torch.float32, label_dtype=torch.long):
    return torch.zeros(2, 2, dtype=dtype), torch.zeros(2, dtype=dtype), torch.zeros(2, dtype=label_dtype)


def test_mode_reference_never_uses_native(fresh_library_state):
    fresh_library_state.setenv("ASL_EDGE_OPS", "reference")
    assert not library.use_native("tca_attention", *attention_inputs())
    assert not library.use_native("nms1d", *nms_inputs())


def test_mode_auto_checks_every_input(fresh_library_state):
    fresh_library_state.setenv("ASL_EDGE_OPS", "auto")
    assert library.use_native("tca_attention", *attention_inputs())
    assert library.use_native("nms1d", *nms_inputs(label_dtype=torch.int32))
    assert not library.use_native("tca_attention", *attention_inputs(torch.bfloat16))
    q, k, v, mask = attention_inputs()
    assert not library.use_native("tca_attention", q, k.double(), v, mask)
    assert not library.use_native("tca_attention", *attention_inputs(mask_dtype=torch.uint8))
    segs, scores, labels = nms_inputs()
    assert not library.use_native("nms1d", segs, scores.double(), labels)
    assert not library.use_native("nms1d", segs, scores, labels.to(torch.int16))


def test_mode_native_fails_loudly_on_unsupported_inputs(fresh_library_state):
    fresh_library_state.setenv("ASL_EDGE_OPS", "native")
    with pytest.raises(NativeOpsError, match="int16"):
        library.use_native("nms1d", *nms_inputs(label_dtype=torch.int16))
    with pytest.raises(NativeOpsError, match="bfloat16"):
        library.use_native("tca_attention", *attention_inputs(torch.bfloat16))


def test_mode_native_fails_loudly_without_the_library(fresh_library_state, tmp_path):
    fresh_library_state.setenv("ASL_EDGE_OPS", "native")
    fresh_library_state.setenv("ASL_EDGE_NATIVE_DIR", str(tmp_path))
    with pytest.raises(NativeOpsError, match="does not exist"):
        library.use_native("tca_attention", *attention_inputs())
    fresh_library_state.setenv("ASL_EDGE_OPS", "auto")
    assert not library.use_native("tca_attention", *attention_inputs())   # auto falls back


def test_library_built_for_another_torch_is_not_loaded(fresh_library_state, tmp_path):
    (tmp_path / library.TORCH_OPS_LIBRARY).write_bytes(b"\x7fELF")
    (tmp_path / library.BUILD_INFO).write_text('{"torch": "0.0.1"}')
    fresh_library_state.setenv("ASL_EDGE_NATIVE_DIR", str(tmp_path))
    state = library.native_state()
    assert not state.loaded and "built for torch 0.0.1" in state.reason


def test_cuda_architecture_coverage(fresh_library_state, tmp_path):
    (tmp_path / library.BUILD_INFO).write_text('{"cuda_architectures": "80-real;87;90"}')
    fresh_library_state.setenv("ASL_EDGE_NATIVE_DIR", str(tmp_path))
    assert library.cuda_arch_supported((8, 0)) and library.cuda_arch_supported((8, 6))   # sm_80 cubin
    assert library.cuda_arch_supported((8, 7)) and library.cuda_arch_supported((9, 0))
    assert library.cuda_arch_supported((12, 0))          # JIT from compute_90 PTX
    assert not library.cuda_arch_supported((7, 5))


def test_corrupt_library_is_reported(fresh_library_state, tmp_path):
    (tmp_path / library.TORCH_OPS_LIBRARY).write_bytes(b"not an ELF file")
    fresh_library_state.setenv("ASL_EDGE_NATIVE_DIR", str(tmp_path))
    state = library.native_state()
    assert not state.loaded and "failed to load" in state.reason


def test_bad_mode_is_an_error(fresh_library_state):
    fresh_library_state.setenv("ASL_EDGE_OPS", "fastest")
    with pytest.raises(NativeOpsError, match="ASL_EDGE_OPS must be one of"):
        library.use_native("nms1d", torch.zeros(1))


def test_network_outputs_equal_with_native_and_reference_ops(fresh_library_state):
    """The whole network (channel attention on, masked tail) gives the same outputs either way."""
    from helpers import randomize_, small_config

    from asl_edge.model import build_model

    model = randomize_(build_model(small_config(theta=0.3, window=5))).eval()
    g = torch.Generator().manual_seed(14)
    features = torch.randn(2, 24, 64, generator=g)
    mask = torch.arange(64)[None, :] < torch.tensor([[64], [41]])
    outputs = {}
    for mode in ("reference", "native"):
        fresh_library_state.setenv("ASL_EDGE_OPS", mode)
        with torch.no_grad():
            outputs[mode] = model(features, mask)
    for got, want in zip(outputs["native"], outputs["reference"]):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_forced_ops_override_the_environment(fresh_library_state):
    fresh_library_state.setenv("ASL_EDGE_OPS", "auto")
    with library.forced_ops("reference"):
        assert not library.use_native("tca_attention", *attention_inputs())
    with library.forced_ops("trace"):            # graph capture: native whatever the dtype
        assert library.use_native("tca_attention", *attention_inputs(torch.bfloat16))
    assert library.use_native("tca_attention", *attention_inputs())
    with pytest.raises(ValueError, match="unknown mode"):
        with library.forced_ops("fastest"):
            pass
