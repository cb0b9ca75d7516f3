"""An independent, functional ActionFormer forward pass over a state dict that uses
ActionFormer's parameter names. Written from the architecture description (DESIGN §2.1) with
plain ops and an explicit O(T²) band-masked attention; it shares no code with asl_edge.model."""

import math

import torch
import torch.nn.functional as F


def _ln(x, w, b):
    mu = x.mean(dim=1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def _conv(x, sd, name, mask_f, stride=1, groups=1):
    w = sd[name + ".weight"]
    return F.conv1d(x, w, sd.get(name + ".bias"), stride=stride, padding=w.shape[-1] // 2, groups=groups) * mask_f


def _attention(q, k, v, mask, heads, window):
    B, D, T = q.shape
    d = D // heads
    idx = torch.arange(T)
    band = (idx[:, None] - idx[None, :]).abs() <= window // 2 if window > 1 else torch.ones(T, T, dtype=torch.bool)
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            logits = (q[b, sl].t() / math.sqrt(d)) @ k[b, sl]
            logits = logits.masked_fill(~(band & mask[b][None, :]), float("-inf"))
            for t in range(T):
                if mask[b, t]:
                    out[b, sl, t] = v[b, sl] @ torch.softmax(logits[t], dim=0)
    return out


def _block(sd, p, x, mask, stride, heads, window):
    out_mask = mask[:, ::stride]
    mf = out_mask[:, None, :].to(x.dtype)
    dim = x.shape[1]
    h = _ln(x, sd[p + "ln1.weight"], sd[p + "ln1.bias"])
    qkv = []
    for name in ("query", "key", "value"):
        t = _conv(h, sd, p + f"attn.{name}_conv.conv", mf, stride=stride, groups=dim)
        t = _ln(t, sd[p + f"attn.{name}_norm.weight"], sd[p + f"attn.{name}_norm.bias"])
        qkv.append(F.conv1d(t, sd[p + f"attn.{name}.weight"], sd[p + f"attn.{name}.bias"]))
    a = _attention(*qkv, out_mask, heads, window)
    a = F.conv1d(a, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"]) * mf
    skip = F.max_pool1d(x, stride + 1, stride, (stride + 1) // 2) if stride > 1 else x
    x = skip * mf + sd[p + "drop_path_attn.scale"] * a
    h = _ln(x, sd[p + "ln2.weight"], sd[p + "ln2.bias"])
    h = F.conv1d(F.gelu(F.conv1d(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"])), sd[p + "mlp.3.weight"],
                 sd[p + "mlp.3.bias"])
    return x + sd[p + "drop_path_mlp.scale"] * (h * mf), out_mask


def _head(sd, p, x, mf, num_layers):
    for i in range(num_layers - 1):
        x = _conv(x, sd, f"{p}.head.{i}.conv", mf)
        x = F.relu(_ln(x, sd[f"{p}.norm.{i}.weight"], sd[f"{p}.norm.{i}.bias"]))
    return x


def actionformer_forward(sd, feats, mask, arch, heads, window, head_layers=3):
    """(B, C, T) features, (B, T) mask -> (B, N, K) logits, (B, N, 2) offsets."""
    x = feats
    mf = mask[:, None, :].to(x.dtype)
    for i in range(arch[0]):
        x = _conv(x, sd, f"backbone.embd.{i}.conv", mf)
        x = F.relu(_ln(x, sd[f"backbone.embd_norm.{i}.weight"], sd[f"backbone.embd_norm.{i}.bias"]))
    for i in range(arch[1]):
        x, mask = _block(sd, f"backbone.stem.{i}.", x, mask, 1, heads, window)
    feats_l, masks_l = [x], [mask]
    for i in range(arch[2]):
        x, mask = _block(sd, f"backbone.branch.{i}.", x, mask, 2, heads, window)
        feats_l.append(x)
        masks_l.append(mask)
    logits, offsets = [], []
    for lv, (f, m) in enumerate(zip(feats_l, masks_l)):
        f = _ln(f, sd[f"neck.fpn_norms.{lv}.weight"], sd[f"neck.fpn_norms.{lv}.bias"])
        mfl = m[:, None, :].to(f.dtype)
        c = _conv(_head(sd, "cls_head", f, mfl, head_layers), sd, "cls_head.cls_head.conv", mfl)
        o = _conv(_head(sd, "reg_head", f, mfl, head_layers), sd, "reg_head.offset_head.conv", mfl)
        logits.append(c.transpose(1, 2))
        offsets.append(F.relu(o * sd[f"reg_head.scale.{lv}.scale"]).transpose(1, 2))
    return torch.cat(logits, 1), torch.cat(offsets, 1)


def actionformer_state_dict(c_in, dim, num_classes, arch, head_layers=3, seed=0):
    """Random weights under ActionFormer's parameter names (embedding/heads with LayerNorm,
    drop-path scales present), as its LocPointTransformer names them."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=None):
        fan_in = shape[1] * shape[2] if len(shape) == 3 else 1
        return torch.randn(*shape, generator=g) * (scale if scale is not None else 1 / math.sqrt(fan_in))

    def norm(name, ch):
        return {name + ".weight": 1 + 0.3 * torch.randn(1, ch, 1, generator=g),
                name + ".bias": 0.1 * torch.randn(1, ch, 1, generator=g)}

    sd = {}
    for i in range(arch[0]):
        sd[f"backbone.embd.{i}.conv.weight"] = rnd(dim, c_in if i == 0 else dim, 3)
        sd.update(norm(f"backbone.embd_norm.{i}", dim))
    blocks = [f"backbone.stem.{i}." for i in range(arch[1])] + [f"backbone.branch.{i}." for i in range(arch[2])]
    for p in blocks:
        sd.update(norm(p + "ln1", dim))
        sd.update(norm(p + "ln2", dim))
        for name in ("query", "key", "value"):
            sd[p + f"attn.{name}_conv.conv.weight"] = rnd(dim, 1, 3)
            sd.update(norm(p + f"attn.{name}_norm", dim))
            sd[p + f"attn.{name}.weight"] = rnd(dim, dim, 1)
            sd[p + f"attn.{name}.bias"] = rnd(dim, scale=0.1)
        sd[p + "attn.proj.weight"] = rnd(dim, dim, 1)
        sd[p + "attn.proj.bias"] = rnd(dim, scale=0.1)
        sd[p + "mlp.0.weight"] = rnd(4 * dim, dim, 1)
        sd[p + "mlp.0.bias"] = rnd(4 * dim, scale=0.1)
        sd[p + "mlp.3.weight"] = rnd(dim, 4 * dim, 1)
        sd[p + "mlp.3.bias"] = rnd(dim, scale=0.1)
        sd[p + "drop_path_attn.scale"] = 0.5 + torch.rand(1, dim, 1, generator=g)
        sd[p + "drop_path_mlp.scale"] = 0.5 + torch.rand(1, dim, 1, generator=g)
    for lv in range(arch[2] + 1):
        sd.update(norm(f"neck.fpn_norms.{lv}", dim))
        sd[f"reg_head.scale.{lv}.scale"] = torch.tensor(1.0 + 0.2 * lv)
    for head in ("cls_head", "reg_head"):
        for i in range(head_layers - 1):
            sd[f"{head}.head.{i}.conv.weight"] = rnd(dim, dim, 3)
            sd.update(norm(f"{head}.norm.{i}", dim))
    sd["cls_head.cls_head.conv.weight"] = rnd(num_classes, dim, 3)
    sd["cls_head.cls_head.conv.bias"] = rnd(num_classes, scale=0.1)
    sd["reg_head.offset_head.conv.weight"] = rnd(2, dim, 3)
    sd["reg_head.offset_head.conv.bias"] = rnd(2, scale=0.1)
    return sd
