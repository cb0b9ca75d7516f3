"""Label assignment, the element losses, the ASL sensitivity parts and ASCL against hand-worked
numbers and explicit loop implementations."""

import math

import pytest
import torch

from asl_edge.model import build_model
from asl_edge.train.criterion import ASLCriterion
from asl_edge.train.labels import assign_points, point_grid
from asl_edge.train.losses import LossNormalizer, diou_loss_1d, sigmoid_focal_loss
from asl_edge.train.sensitivity import ClassSensitivity, contrastive_loss, segment_embeddings

from helpers import small_config, valid_mask


def _positives(assignment):
    return assignment.positive.nonzero()[:, 0].tolist()


# ------------------------------------------------------------------------------ label assignment


def test_centre_sampling_radius_on_one_level():
    points = point_grid([12], [1], [[0, 100]])
    seg = torch.tensor([[2.0, 8.0]])
    lab = torch.tensor([1])
    # centre 5, radius 1.5 -> (3.5, 6.5): strictly inside are 4, 5, 6
    centre = assign_points(points, seg, lab, 3, center_sample=True, radius=1.5)
    assert _positives(centre) == [4, 5, 6]
    # without centre sampling: strictly inside (2, 8)
    plain = assign_points(points, seg, lab, 3, center_sample=False)
    assert _positives(plain) == [3, 4, 5, 6, 7]
    assert centre.cls_targets[5].tolist() == [0.0, 1.0, 0.0]
    assert centre.reg_targets[4].tolist() == [2.0, 4.0]
    assert centre.reg_targets[0].tolist() == [0.0, 0.0] and centre.gt_index[0] == -1


def test_centre_radius_scales_with_stride_and_targets_are_in_stride_units():
    points = point_grid([8], [2], [[0, 100]])  # t = 0, 2, ..., 14
    seg = torch.tensor([[3.0, 13.0]])  # centre 8, radius 1.5 * 2 = 3 -> (5, 11)
    a = assign_points(points, seg, torch.tensor([0]), 1, radius=1.5)
    assert _positives(a) == [3, 4, 5]  # t = 6, 8, 10
    assert a.reg_targets[3].tolist() == [1.5, 3.5]  # (6 - 3) / 2, (13 - 6) / 2


def test_regression_range_per_level():
    # level 0: stride 1, range [0, 4]; level 1: stride 2, range [4, 100]
    points = point_grid([16, 8], [1, 2], [[0, 4], [4, 100]])
    a = assign_points(points, torch.tensor([[0.0, 10.0]]), torch.tensor([0]), 1, radius=1.5)
    # level-0 candidates 4, 5, 6 reach 6, 5, 6 > 4; level-1 candidates t = 4, 6 reach 6 in [4, 100]
    assert _positives(a) == [16 + 2, 16 + 3]
    small = assign_points(points, torch.tensor([[3.0, 7.0]]), torch.tensor([0]), 1, radius=1.5)
    # level 0: t = 4, 5, 6 reach 3, 2, 3 <= 4; level 1: t = 4, 6 reach 3 < 4
    assert _positives(small) == [4, 5, 6]


def test_shortest_segment_wins_and_equal_lengths_share_the_point():
    points = point_grid([30], [1], [[0, 100]])
    segs = torch.tensor([[0.0, 20.0], [8.0, 12.0]])
    a = assign_points(points, segs, torch.tensor([0, 1]), 2, center_sample=False)
    assert a.gt_index[10] == 1 and a.cls_targets[10].tolist() == [0.0, 1.0]
    assert a.reg_targets[10].tolist() == [2.0, 2.0]
    assert a.gt_index[5] == 0 and a.reg_targets[5].tolist() == [5.0, 15.0]
    tied = assign_points(points, torch.tensor([[4.0, 10.0], [6.0, 12.0]]), torch.tensor([0, 1]), 2,
                         center_sample=False)
    assert tied.cls_targets[8].tolist() == [1.0, 1.0]  # both length 6: both classes
    assert tied.gt_index[8] == 0 and tied.reg_targets[8].tolist() == [4.0, 2.0]  # the first one regresses


def test_no_segments_gives_only_negatives():
    points = point_grid([10], [1], [[0, 100]])
    a = assign_points(points, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3)
    assert not a.positive.any() and a.cls_targets.sum() == 0


# ---------------------------------------------------------------------------- element losses


@pytest.mark.parametrize("logit,target", [(0.3, 1.0), (-2.0, 0.0), (1.5, 0.0), (-0.7, 1.0), (0.2, 0.9)])
def test_focal_loss_matches_the_formula(logit, target):
    p = 1 / (1 + math.exp(-logit))
    ce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    expected = alpha_t * (1 - p_t) ** 2 * ce
    got = sigmoid_focal_loss(torch.tensor([logit], dtype=torch.float64), torch.tensor([target], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def _diou_direct(point, pred, target):
    ps, pe = point - pred[0], point + pred[1]
    gs, ge = point - target[0], point + target[1]
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (pe - ps) + (ge - gs) - inter
    enclosing = max(pe, ge) - min(ps, gs)
    centre_distance = (ps + pe) / 2 - (gs + ge) / 2
    return 1 - inter / union + (centre_distance / enclosing) ** 2


@pytest.mark.parametrize("pred,target", [((2.0, 3.0), (2.0, 3.0)), ((1.0, 4.0), (3.0, 1.0)),
                                         ((0.5, 0.5), (4.0, 6.0)), ((5.0, 0.1), (0.2, 7.0))])
def test_diou_matches_the_formula(pred, target):
    got = diou_loss_1d(torch.tensor([pred], dtype=torch.float64), torch.tensor([target], dtype=torch.float64))
    assert got.item() == pytest.approx(_diou_direct(10.0, pred, target), abs=1e-12)


def test_loss_normalizer_running_mean():
    norm = LossNormalizer(100, 0.9)
    assert norm.update(20) == pytest.approx(92.0)
    assert norm.update(0) == pytest.approx(0.9 * 92.0 + 0.1 * 1)


# ---------------------------------------------------------------------------- sensitivity


def test_gaussians_start_as_specified_and_get_gradients():
    sens = ClassSensitivity(3)
    d = torch.tensor([0.5, 0.0, -0.5, 0.25])
    c = torch.tensor([0, 1, 2, 1])
    p_cls, p_loc = sens(d, c)
    expected_cls = [math.exp(-x * x / 2) for x in d.tolist()]
    expected_loc = [0.5 * (math.exp(-(x - 0.5) ** 2 / 2) + math.exp(-(x + 0.5) ** 2 / 2)) for x in d.tolist()]
    assert sens.sigma.detach().flatten().tolist() == pytest.approx([1.0] * 9)
    assert p_cls.tolist() == pytest.approx(expected_cls)
    assert p_loc.tolist() == pytest.approx(expected_loc)
    (p_cls.sum() + p_loc.sum()).backward()
    assert sens.mu.grad[[0, 1, 2]].abs().sum() > 0 and sens.sigma_raw.grad.abs().sum() > 0


def test_sigma_stays_positive_under_large_steps():
    sens = ClassSensitivity(2)
    opt = torch.optim.SGD(sens.parameters(), lr=50.0)
    d = torch.linspace(-0.5, 0.5, 11)
    for _ in range(100):
        p_cls, p_loc = sens(d, torch.zeros(11, dtype=torch.long))
        opt.zero_grad()
        (p_cls.sum() + p_loc.sum()).backward()  # minimising the weights pulls sigma towards 0
        opt.step()
    assert bool((sens.sigma > 0).all()) and bool(torch.isfinite(sens.sigma).all())
    assert float(sens.sigma[0].min().detach()) < 0.5  # it did move


_SEGMENTS = [[[3.0, 20.0], [30.0, 34.0], [40.0, 60.0]], [[5.0, 15.0]]]


def _criterion_inputs(config, seed=0):
    torch.manual_seed(seed)
    model = build_model(config)
    model.train()
    T = config.dataset.max_seq_len
    x = torch.randn(2, config.dataset.input_dim, T)
    mask = valid_mask([T, 40], T)
    segments = [torch.tensor(segs) for segs in _SEGMENTS]
    labels = [torch.tensor([0, 2, 1]), torch.tensor([2])]
    return model, x, mask, segments, labels


def _asl_config(class_level=True, instance_level=True, contrastive=True, **extra):
    config = small_config(droppath=0.0)
    asl = config.train_cfg.asl
    asl.class_level, asl.instance_level, asl.contrastive = class_level, instance_level, contrastive
    for key, value in extra.items():
        setattr(asl, key, value)
    config.train_cfg.init_loss_norm = 100
    return config


def test_instance_level_targets_are_detached():
    grads = []
    for mse_weight in (0.0, 1.0):
        config = _asl_config(class_level=False, contrastive=False, mse_weight=mse_weight)
        model, x, mask, segments, labels = _criterion_inputs(config)
        criterion = ASLCriterion(config, model.strides, config.model.fpn_dim)
        torch.manual_seed(1)
        criterion.instance_head.out.bias.data.normal_()
        feats, masks = model.pyramid(x, mask)
        logits, offsets = model.heads(feats, masks)
        logits.retain_grad()
        offsets.retain_grad()
        loss, parts = criterion(feats, masks, logits, offsets, segments, labels)
        loss.backward()
        assert parts["mse"] > 0
        head_grad = criterion.instance_head.conv.weight.grad
        grads.append((logits.grad.clone(), offsets.grad.clone(), model.embedding.layers[0].conv.weight.grad.clone(),
                      None if head_grad is None else head_grad.abs().sum()))
    # the MSE loss changes nothing upstream of the instance head ...
    for a, b in zip(grads[0][:3], grads[1][:3]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... and does train the head
    assert grads[1][3] > 0


def _valid_points(model, config, masks):
    """(video, point index, t, stride, assigned GT or None) for every valid point, assigned by a
    direct loop over the rules: centre radius 1.5·stride, range on the farther end, shortest wins."""
    lengths = [m.shape[1] for m in masks]
    points = [(i * s, lo, hi, s) for n, s, (lo, hi) in zip(lengths, model.strides, config.model.regression_range)
              for i in range(n)]
    valid = torch.cat(masks, dim=1)
    for b in range(valid.shape[0]):
        for n, (t, lo, hi, s) in enumerate(points):
            if not valid[b, n]:
                continue
            best = None
            for g, (st, ed) in enumerate(_SEGMENTS[b]):
                c = (st + ed) / 2
                inside = t - max(st, c - 1.5 * s) > 0 and min(ed, c + 1.5 * s) - t > 0
                if inside and lo <= max(t - st, ed - t) <= hi and (best is None or ed - st < best[1] - 1e-3):
                    best = (g, ed - st)
            yield b, n, t, s, None if best is None else best[0]


def test_all_parts_off_is_actionformer_loss():
    config = _asl_config(False, False, False)
    model, x, mask, segments, labels = _criterion_inputs(config)
    criterion = ASLCriterion(config, model.strides, config.model.fpn_dim)
    feats, masks = model.pyramid(x, mask)
    logits, offsets = model.heads(feats, masks)
    loss, parts = criterion(feats, masks, logits, offsets, segments, labels)
    assert set(parts) == {"cls", "reg", "num_pos"}
    assert not list(criterion.parameters())
    # independent per-point computation of ActionFormer's loss
    cls_sum, reg_sum, num_pos = 0.0, 0.0, 0
    for b, n, t, s, best in _valid_points(model, config, masks):
        target = torch.zeros(config.dataset.num_classes, dtype=torch.float64)
        if best is not None:
            st, ed = segments[b][best].tolist()
            target[labels[b][best]] = 1.0
            reg = ((t - st) / s, (ed - t) / s)
            reg_sum += _diou_direct(0.0, offsets[b, n].detach().tolist(), reg)
            num_pos += 1
        cls_sum += float(sigmoid_focal_loss(logits[b, n].detach().double(), target).sum())
    norm = 0.9 * 100 + 0.1 * num_pos
    assert parts["num_pos"] == num_pos > 0
    assert loss.item() == pytest.approx((cls_sum + reg_sum) / norm, rel=1e-5)


def test_class_level_weights_reach_mu_and_sigma_through_the_losses():
    config = _asl_config(instance_level=False, contrastive=False)
    model, x, mask, segments, labels = _criterion_inputs(config)
    criterion = ASLCriterion(config, model.strides, config.model.fpn_dim)
    feats, masks = model.pyramid(x, mask)
    logits, offsets = model.heads(feats, masks)
    loss, _ = criterion(feats, masks, logits, offsets, segments, labels)
    loss.backward()
    sens = criterion.class_sensitivity
    # classes 0, 1, 2 all have positives; each Gaussian gets a gradient
    assert bool((sens.mu.grad.abs() > 0).all()) and bool((sens.sigma_raw.grad.abs() > 0).all())


def _gauss(x, mu, sigma):
    return math.exp(-(x - mu) ** 2 / (2 * sigma ** 2))


def test_asl_weighted_losses_match_a_per_point_computation():
    config = _asl_config(contrastive=False)
    model, x, mask, segments, labels = _criterion_inputs(config, seed=2)
    criterion = ASLCriterion(config, model.strides, config.model.fpn_dim)
    with torch.no_grad():  # asymmetric Gaussians pin the sign of d = (m - t) / L
        criterion.class_sensitivity.mu.copy_(torch.tensor([[0.3, 0.6, -0.1], [-0.25, 0.2, -0.7], [0.1, 0.4, -0.4]]))
        criterion.class_sensitivity.sigma_raw.copy_(torch.tensor([[0.2, -0.5, 0.1], [0.9, 0.0, -0.3], [-0.2, 0.3, 0.5]]))
        criterion.instance_head.out.bias.normal_(generator=torch.Generator().manual_seed(4))
    feats, masks = model.pyramid(x, mask)
    logits, offsets = model.heads(feats, masks)
    loss, parts = criterion(feats, masks, logits, offsets, segments, labels)
    q = criterion.instance_head(feats, masks).detach()
    mu = criterion.class_sensitivity.mu.detach().tolist()
    sigma = criterion.class_sensitivity.sigma.detach().tolist()
    cls_sum = reg_sum = 0.0
    mse_cls, mse_loc = [], []
    for b, n, t, s, best in _valid_points(model, config, masks):
        target = torch.zeros(config.dataset.num_classes, dtype=torch.float64)
        weight = 1.0
        if best is not None:
            st, ed = segments[b][best].tolist()
            k = int(labels[b][best])
            target[k] = 1.0
            d = ((st + ed) / 2 - t) / (ed - st)
            p_cls = _gauss(d, mu[k][0], sigma[k][0])
            p_loc = 0.5 * (_gauss(d, mu[k][1], sigma[k][1]) + _gauss(d, mu[k][2], sigma[k][2]))
            q_cls, q_loc = q[b, n].tolist()
            weight = p_cls + q_cls
            pred = offsets[b, n].detach().tolist()
            reg = ((t - st) / s, (ed - t) / s)
            reg_sum += (p_loc + q_loc) * _diou_direct(0.0, pred, reg)
            inter = min(pred[0], reg[0]) + min(pred[1], reg[1])
            iou = inter / (sum(pred) + sum(reg) - inter)
            mse_cls.append((q_cls - 1 / (1 + math.exp(-float(logits[b, n, k].detach())))) ** 2)
            mse_loc.append((q_loc - iou) ** 2)
        cls_sum += weight * float(sigmoid_focal_loss(logits[b, n].detach().double(), target).sum())
    norm = 0.9 * 100 + 0.1 * len(mse_cls)
    mse = sum(mse_cls) / len(mse_cls) + sum(mse_loc) / len(mse_loc)
    assert parts["cls"] == pytest.approx(cls_sum / norm, rel=1e-5)
    assert parts["reg"] == pytest.approx(reg_sum / norm, rel=1e-5)
    assert parts["mse"] == pytest.approx(mse, rel=1e-5)
    assert loss.item() == pytest.approx((cls_sum + reg_sum) / norm + mse, rel=1e-5)


# ---------------------------------------------------------------------------------- ASCL


def _ascl_direct(anchors, classes, backgrounds, tau):
    z = [a / a.norm() for a in anchors]
    bg = [b / b.norm() for b in backgrounds]
    losses = []
    for i, a in enumerate(z):
        positives = [j for j in range(len(z)) if j != i and classes[j] == classes[i]]
        negatives = [z[j] for j in range(len(z)) if classes[j] != classes[i]] + bg
        if not positives:
            continue
        neg = sum(math.exp(float(a @ n) / tau) for n in negatives)
        terms = []
        for j in positives:
            e = math.exp(float(a @ z[j]) / tau)
            terms.append(-math.log(e / (e + neg)))
        losses.append(sum(terms) / len(terms))
    return sum(losses) / len(losses)


def test_contrastive_loss_matches_explicit_computation():
    g = torch.Generator().manual_seed(3)
    anchors = torch.randn(7, 5, generator=g, dtype=torch.float64)
    classes = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # class 3 has no positive: not an anchor of the mean
    backgrounds = torch.randn(3, 5, generator=g, dtype=torch.float64)
    got = contrastive_loss(anchors, classes, backgrounds, 0.07)
    assert got.item() == pytest.approx(_ascl_direct(anchors, classes.tolist(), backgrounds, 0.07), rel=1e-6)
    no_bg = contrastive_loss(anchors, classes, backgrounds[:0], 0.5)
    assert no_bg.item() == pytest.approx(_ascl_direct(anchors, classes.tolist(), [], 0.5), rel=1e-6)


def test_segment_embeddings_weight_frames_and_take_background_context():
    feats = torch.arange(3 * 20, dtype=torch.float32).reshape(1, 3, 20)
    mask = torch.ones(1, 20, dtype=torch.bool)
    segs = [torch.tensor([[5.0, 15.0]])]  # L = 10, background (3, 5) and (15, 17]: t = 3, 4, 16, 17
    sens = ClassSensitivity(2)
    anchors, classes, bg = segment_embeddings(feats, mask, 1.0, segs, [torch.tensor([1])], sens, 0.2)
    t = torch.arange(5, 16, dtype=torch.float32)
    p_cls, p_loc = sens((10.0 - t) / 10.0, torch.ones(11, dtype=torch.long))
    x = feats[0, :, 5:16]
    torch.testing.assert_close(anchors[0], (x * p_cls.detach()).sum(1) / 11)
    torch.testing.assert_close(anchors[1], (x * p_loc.detach()).sum(1) / 11)
    assert classes.tolist() == [1, 1]
    torch.testing.assert_close(bg[0], feats[0][:, [3, 4, 16, 17]].mean(1))
    # padded frames are neither action nor background
    short = segment_embeddings(feats, valid_mask([16], 20), 1.0, segs, [torch.tensor([1])], None, 0.2)
    torch.testing.assert_close(short[2][0], feats[0][:, [3, 4]].mean(1))
