"""LAIN's per-layer adapter: the Locality Adapter (LA) and the Interaction Adapter (IA).

Follows the official code (OreoChocolate/LAIN models/adapters.py, lain-reference.md §5-7) with the sizes taken
from the CLIP model instead of ViT-B/16's hard-coded 768 / 14x14 / 14/224. One `LAINAdapter` sits at the input of
every CLIP vision layer; it reads the raw residual stream (no LN first) and returns a residual update:

    x <- x + [dT (HO tokens + CLS, from the IA) ; dF (patches, from the LA)]

LA (per layer, F = patch tokens, D_a = 32):
    F~ = ReLU(Linear_D->Da(F))                        (LoRA init: kaiming-uniform(a=sqrt 5), zero bias)
    F^ = alpha * F~ + P_layout                        (P_layout: the shared layout-prior MLP, [B, Gh, Gw, Da])
    F^ = Linear(LN(F^))
    M  = LN(LeakyReLU(sum_k Conv_kxk(F^)))            (k in {3, 5}) or windowed attention ("local_attn")
    dF = gamma_LA * Linear_Da->D(M)                   (gamma_LA: per-channel, init 1e-9)
IA (per layer):
    R  = LN(Linear_D->Da(ROIAlign(F + dF, box)))      (every kept box + a full-image box; r x r tokens each;
                                                       computed as a linear map, see RoiPlan)
    C  = Dec(queries -> R)                            (10 learnable context queries per box)
    H' = Dec(C_h -> C_o), O' = Dec(C_o -> C_h)        (IPRM: mutual attention, one shared layer)
    t  = LeakyReLU(Linear_D->Da(T));  h = Dec(t -> H'), o = Dec(t -> O')
    dT = gamma_IA * Linear_2Da->D([h; o])             (CLS: pseudo-pair of the full-image box with itself)
"Dec" = cross-attention (2 heads), Add&LN, FFN (2 Da, ReLU), Add&LN, dropout 0.1, no self-attention.

Per-layer parameters at width 768, D_a = 32: LA 86,784 + IA 125,920 = 212,704 (lain-reference §10).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align


class MLP(nn.Module):
    """Linear layers with ReLU in between (DETR's / LAIN's `MLP(input, hidden, output, num_layers)`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _lora_init(linear: nn.Linear) -> nn.Linear:
    # Official `init_option="lora"` for down_proj / down_proj3: kaiming-uniform(a=sqrt 5) weights, zero bias.
    nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5))
    nn.init.zeros_(linear.bias)
    return linear


class CrossAttentionLayer(nn.Module):
    """LAIN's decoder layer with its self-attention removed: cross-attention, Add&LN, FFN, Add&LN (post-norm).

    forward(query [N, Lq, d], memory [N, Lk, d]) -> [N, Lq, d]. No positional encodings.
    """

    def __init__(self, dim: int, heads: int = 2, ffn_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, fast: bool = False) -> Tensor:
        """fast: attention weights by `_small_softmax` when memories are shorter than 16 (same values)."""
        q = self.norm1(query + self.dropout1(self._attend(query, memory, fast)))
        return self.norm2(q + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(q))))))

    def _attend(self, query: Tensor, memory: Tensor, fast: bool = False) -> Tensor:
        # nn.MultiheadAttention's computation with its own parameters, without its per-call overhead (these
        # layers run on tiny tensors, where that overhead dominated the step time).
        a, d = self.attn, query.shape[-1]
        h = a.num_heads
        w, b = a.in_proj_weight, a.in_proj_bias
        q = F.linear(query, w[:d], b[:d])
        k, v = F.linear(memory, w[d:], b[d:]).chunk(2, -1)
        split = lambda t: t.unflatten(-1, (h, d // h)).transpose(-3, -2)  # noqa: E731  [N, h, L, d/h]
        p = a.dropout if self.training else 0.0
        if fast and memory.shape[-2] < 16:
            # SDPA's own math (its CPU path with dropout), with the row softmax of `_small_softmax`; F.dropout on
            # the same [N, h, Lq, Lk] weights draws the same random mask as SDPA does.
            att = _small_softmax(split(q) @ (split(k).transpose(-1, -2) * (d // h) ** -0.5))
            o = F.dropout(att, p, self.training) @ split(v)
        else:
            o = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=p)
        return a.out_proj(o.transpose(-3, -2).flatten(-2))


class _SmallSoftmax(torch.autograd.Function):
    """Softmax over a short last dimension (< 16). torch's CPU softmax kernels vectorise along the softmax dimension
    and fall back to a slow scalar loop below one vector (16 floats): 10-key rows took ~4x longer forward+backward
    than these few whole-tensor ops."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        e = (x - x.amax(-1, keepdim=True)).exp_()
        y = e.div_(e.sum(-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        gy = g * y
        return gy.sub_(y * gy.sum(-1, keepdim=True))


def _small_softmax(x: Tensor) -> Tensor:
    return _SmallSoftmax.apply(x) if x.device.type == "cpu" else x.softmax(-1)


@dataclass
class RoiPlan:
    """ROIAlign as a fixed linear map, computed once per forward and shared by every layer.

    roi_align(aligned=True) is linear in the feature map, with weights that depend only on the boxes; so
    roi_align(F)[k] = W_k @ F[image of k]. Applying it as a batched matrix product after the IA's down-projection
    (Linear(W F) = W (F A^T) + b) gives the official ROIAlign -> Linear result at D_a instead of D channels.

    weights: [B, Kmax * r * r, G] (per image, boxes padded to Kmax); batch, slot: [K] image and slot of each box;
    size: r.
    """

    weights: Tensor
    batch: Tensor
    slot: Tensor
    size: int

    def apply(self, feats: Tensor) -> Tensor:
        """feats [B, G, C] (row-major grid) -> [K, r*r, C], equal to torchvision's roi_align."""
        out = torch.bmm(self.weights.to(feats.dtype), feats)  # [B, Kmax * r * r, C]
        out = out.view(feats.shape[0], -1, self.size * self.size, feats.shape[-1])
        return out[self.batch, self.slot]


def plan_rois(boxes: Tensor, batch_size: int, grid: tuple, roi_size: int, spatial_scale: float) -> RoiPlan:
    """Build the `RoiPlan` of boxes [K, 5] (image index, x1, y1, x2, y2) with torchvision's roi_align
    (aligned=True, adaptive sampling) applied to a one-hot basis of the grid."""
    gh, gw = grid
    g = gh * gw
    basis = torch.eye(g, device=boxes.device, dtype=torch.float32).view(1, g, gh, gw)
    one = torch.cat([torch.zeros_like(boxes[:, :1]), boxes[:, 1:]], 1).float()
    w = roi_align(basis, one, (roi_size, roi_size), spatial_scale=spatial_scale, aligned=True)  # [K, G, r, r]
    w = w.flatten(2).transpose(1, 2)  # [K, r*r, G]
    batch = boxes[:, 0].long()
    counts = torch.bincount(batch, minlength=batch_size)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.sort(batch, stable=True).indices
    slot = torch.empty_like(batch)
    slot[order] = torch.arange(boxes.shape[0], device=boxes.device) - starts[batch[order]]  # rank within image
    k_max = int(counts.max()) if boxes.shape[0] else 0
    weights = w.new_zeros(batch_size, k_max, roi_size * roi_size, g)
    weights[batch, slot] = w
    return RoiPlan(weights.flatten(1, 2), batch, slot, roi_size)


class LocalWindowAttention(nn.Module):
    """Self-attention of every grid cell over its k x k neighbourhood (the "LA: Local Attention" ablation row).

    Replaces one k x k convolution of the LA: same window, same input/output width. Cells outside the grid are
    masked out; a learnable bias per (head, window offset) gives the window a notion of position, like the
    convolution's per-offset weights. forward([B, d, Gh, Gw]) -> [B, d, Gh, Gw].
    """

    def __init__(self, dim: int, window: int, heads: int = 2):
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"local-attention window must be odd, got {window}")
        if dim % heads:
            raise ValueError(f"adapter width {dim} is not divisible by {heads} heads")
        self.window, self.heads = window, heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.pos_bias = nn.Parameter(torch.zeros(heads, window * window))

    def forward(self, x: Tensor) -> Tensor:
        b, d, gh, gw = x.shape
        k, h, n = self.window, self.heads, gh * gw
        q, kk, v = self.qkv(x.flatten(2).transpose(1, 2)).chunk(3, -1)  # each [B, N, d]
        # Unfold keys/values into the k*k neighbourhood of every cell (zero padding, masked below).
        def neigh(t: Tensor) -> Tensor:
            t = F.unfold(t.transpose(1, 2).reshape(b, d, gh, gw), k, padding=k // 2)  # [B, d*k*k, N]
            return t.view(b, h, d // h, k * k, n).permute(0, 1, 4, 3, 2)  # [B, h, N, k*k, d/h]
        kn, vn = neigh(kk), neigh(v)
        qh = q.view(b, n, h, d // h).transpose(1, 2)  # [B, h, N, d/h]
        att = (kn @ qh.unsqueeze(-1)).squeeze(-1) / math.sqrt(d // h) + self.pos_bias[None, :, None]  # [B,h,N,kk]
        inside = F.unfold(x.new_ones(1, 1, gh, gw), k, padding=k // 2).transpose(1, 2) > 0  # [1, N, k*k]
        att = att.masked_fill(~inside[:, None], float("-inf")).softmax(-1)
        o = (att.unsqueeze(-2) @ vn).squeeze(-2)  # [B, h, N, d/h]
        o = self.out(o.transpose(1, 2).reshape(b, n, d))
        return o.transpose(1, 2).reshape(b, d, gh, gw)


class LocalityAdapter(nn.Module):
    """LA: locality-aware update of the patch tokens (lain-reference §6).

    Args:
        width: CLIP vision width D; dim: D_a; kernels: window sizes K (odd);
        alpha: weight of the visual term in alpha * F~ + P_layout;
        use_visual: False = "LA: w/o visual info" (F^ = P_layout); use_layout: False = "LA: w/o spatial layout";
        mixer: "conv" (multi-scale convolutions, summed) | "local_attn" (windowed attention per window size);
        gamma_init: initial value of the per-channel gamma_LA.
    """

    def __init__(self, width: int, dim: int = 32, kernels: tuple = (3, 5), alpha: float = 1.0,
                 use_visual: bool = True, use_layout: bool = True, mixer: str = "conv", gamma_init: float = 1e-9,
                 heads: int = 2):
        super().__init__()
        if not (use_visual or use_layout):
            raise ValueError("the Locality Adapter needs visual information, the spatial layout, or both")
        if not kernels or any(int(k) % 2 != 1 for k in kernels):
            raise ValueError(f"LA kernel sizes must be odd, got {tuple(kernels)}")
        self.alpha, self.use_visual, self.use_layout = alpha, use_visual, use_layout
        self.down = _lora_init(nn.Linear(width, dim)) if use_visual else None
        self.ln_in = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, dim)
        if mixer == "conv":
            self.mixers = nn.ModuleList(nn.Conv2d(dim, dim, k, 1, k // 2) for k in kernels)
        elif mixer == "local_attn":
            self.mixers = nn.ModuleList(LocalWindowAttention(dim, k, heads) for k in kernels)
        else:
            raise ValueError(f"la_mixer must be 'conv' or 'local_attn', got {mixer!r}")
        self.ln_out = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, width)
        self.gamma = nn.Parameter(torch.full((width,), float(gamma_init)))

    def forward(self, patches: Tensor, layout: Tensor | None, grid: tuple, merged: bool = False) -> Tensor:
        """patches [B, Gh*Gw, D] (row-major grid), layout [B, Gh, Gw, Da] or None -> dF [B, Gh*Gw, D].

        merged: run the summed convolutions as the one convolution `merged_conv` (the fast path)."""
        b, (gh, gw) = patches.shape[0], grid
        f = 0
        if self.use_visual:
            f = self.alpha * F.relu(self.down(patches)).view(b, gh, gw, -1)
        if self.use_layout:
            if layout is None:
                raise ValueError("LocalityAdapter(use_layout=True) needs the layout prior")
            f = f + layout
        f = self.proj_in(self.ln_in(f)).permute(0, 3, 1, 2)  # [B, Da, Gh, Gw]
        if merged and isinstance(self.mixers[0], nn.Conv2d):
            weight, bias = self.merged_conv()
            m = F.conv2d(f, weight, bias, padding=weight.shape[-1] // 2)
        else:
            m = sum(mix(f) for mix in self.mixers)
        m = self.ln_out(F.leaky_relu(m).permute(0, 2, 3, 1))  # [B, Gh, Gw, Da]
        return self.gamma * self.up(m).view(b, gh * gw, -1)

    def merged_conv(self) -> tuple[Tensor, Tensor]:
        """The "conv" mixer's sum of k x k convolutions (stride 1, padding k // 2) as one K x K convolution, K the
        largest k: weight = sum of the kernels zero-padded to K x K around their centre, bias = sum of the biases.
        Built from the parameters at every call, so gradients reach each of them."""
        k_max = max(c.kernel_size[0] for c in self.mixers)
        weight = sum(F.pad(c.weight, [(k_max - c.kernel_size[0]) // 2] * 4) for c in self.mixers)
        return weight, sum(c.bias for c in self.mixers)


class InteractionAdapter(nn.Module):
    """IA: updates every HO token (and CLS) from its human and object regions (lain-reference §7).

    Args:
        width: CLIP vision width D; dim: D_a; roi_size: ROIAlign output r (r x r tokens per box);
        n_queries: learnable context queries; use_context: False = "IA: w/o context extraction" (the r*r ROI tokens
        are used directly); use_iprm: False = "IA: w/o IPRM" (no mutual human<->object attention);
        heads, ffn_dim, dropout: of every "Dec" layer; gamma_init: initial value of the per-channel gamma_IA.
    """

    def __init__(self, width: int, dim: int = 32, roi_size: int = 7, n_queries: int = 10, use_context: bool = True,
                 use_iprm: bool = True, heads: int = 2, ffn_dim: int = 64, dropout: float = 0.1,
                 gamma_init: float = 1e-9):
        super().__init__()
        self.roi_size, self.use_context, self.use_iprm = roi_size, use_context, use_iprm
        self.roi_down = nn.Linear(width, dim)
        self.roi_ln = nn.LayerNorm(dim)
        if use_context:
            self.queries = nn.Embedding(n_queries, dim)
            self.context = CrossAttentionLayer(dim, heads, ffn_dim, dropout)
        if use_iprm:
            self.iprm = CrossAttentionLayer(dim, heads, ffn_dim, dropout)
        self.token_down = _lora_init(nn.Linear(width, dim))
        self.token_dec = CrossAttentionLayer(dim, heads, ffn_dim, dropout)
        self.up = nn.Linear(2 * dim, width)
        self.gamma = nn.Parameter(torch.full((width,), float(gamma_init)))

    def forward(self, patches: Tensor, tokens: Tensor, rois: RoiPlan, pair_h: Tensor, pair_o: Tensor,
                fast: bool = False) -> Tensor:
        """
        Args:
            patches: [B, G, D] LA-updated patches of the layer (row-major grid).
            tokens: [T, D] the tokens to update (HO tokens and one CLS per image), raw residual stream.
            rois: the ROIAlign plan of all kept boxes and the full-image boxes (K boxes).
            pair_h, pair_o: [T] box rows (of `rois`) of each token's human / object (the full-image box for CLS).
            fast: the decoder layers' fast attention (`CrossAttentionLayer.forward`).
        Returns:
            dT: [T, D].
        """
        if rois.size != self.roi_size:
            raise ValueError(f"ROI plan of size {rois.size} for an adapter built with roi_size {self.roi_size}")
        # = LN(Linear(ROIAlign(F))) with the linear map applied first (both are linear; see RoiPlan).
        r = rois.apply(F.linear(patches, self.roi_down.weight)) + self.roi_down.bias
        r = self.roi_ln(r)  # [K, r*r, Da]
        if self.use_context:
            ctx = self.context(self.queries.weight.expand(r.shape[0], -1, -1), r, fast)  # [K, Q, Da]
        else:
            ctx = r
        c_h, c_o = ctx[pair_h], ctx[pair_o]  # [T, Q, Da] each
        if self.use_iprm:
            # One layer serves both directions, as in the official code (batched together).
            both = self.iprm(torch.cat([c_h, c_o]), torch.cat([c_o, c_h]), fast)
            c_h, c_o = both.chunk(2)
        t = F.leaky_relu(self.token_down(tokens))[:, None]  # [T, 1, Da]
        ho = self.token_dec(torch.cat([t, t]), torch.cat([c_h, c_o]), fast)[:, 0]  # [2T, Da]
        h, o = ho.chunk(2)
        return self.gamma * self.up(torch.cat([h, o], -1))


@dataclass
class AdapterContext:
    """Per-forward information every layer adapter needs (built once by the model, shared by all layers).

    n_tok: HO slots + 1 (the CLS position is n_tok - 1); grid: (Gh, Gw); layout: [B, Gh, Gw, Da] or None;
    rois: `RoiPlan` of the K boxes (kept boxes, then one full-image box per image); tok_batch, tok_slot: [T]
    sequence position (image, slot) of each updated token (None on the fast path's flat stream, where the tokens'
    order alone places them); pair_h, pair_o: [T] box rows of each token.
    """

    n_tok: int
    grid: tuple
    layout: Tensor | None
    rois: RoiPlan | None
    tok_batch: Tensor | None
    tok_slot: Tensor | None
    pair_h: Tensor
    pair_o: Tensor


class LAINAdapter(nn.Module):
    """LA + IA of one CLIP layer. forward(x [B, L, D], ctx) -> x + update, with L = n_tok + Gh*Gw.

    Either part may be None (the "+ LA only" / "+ IA only" rows); without the LA the IA reads the layer's
    patches unchanged.
    """

    def __init__(self, la: LocalityAdapter | None, ia: InteractionAdapter | None):
        super().__init__()
        if la is None and ia is None:
            raise ValueError("a LAINAdapter needs a Locality Adapter, an Interaction Adapter or both")
        self.la, self.ia = la, ia

    def forward(self, x: Tensor, ctx: AdapterContext) -> Tensor:
        head, patches = x[:, :ctx.n_tok], x[:, ctx.n_tok:]
        if self.la is not None:
            patches = patches + self.la(patches, ctx.layout, ctx.grid)
        if self.ia is not None:
            tokens = head[ctx.tok_batch, ctx.tok_slot]
            dt = self.ia(patches, tokens, ctx.rois, ctx.pair_h, ctx.pair_o)
            head = torch.index_put(head, (ctx.tok_batch, ctx.tok_slot), dt.to(head.dtype), accumulate=True)
        return torch.cat([head, patches], 1)

    def forward_flat(self, x: Tensor, n_images: int, ctx: AdapterContext) -> Tensor:
        """The same update on the fast path's flat residual stream.

        x: [B * N + P, D], the B images' [CLS, patches] (N = 1 + Gh*Gw), then the P HO tokens; the IA's tokens are
        the HO tokens then every image's CLS, as in `forward` (ctx.tok_batch / tok_slot are not used).
        Returns [B * N + P, D].
        """
        p = ctx.pair_h.shape[0] - n_images
        bn, d = x.shape[0] - p, x.shape[1]
        img = x[:bn].view(n_images, -1, d)
        patches, cls, ho = img[:, 1:], img[:, 0], x[bn:]
        if self.la is not None:
            patches = patches + self.la(patches, ctx.layout, ctx.grid, merged=True)
        if self.ia is not None:
            dt = self.ia(patches, torch.cat([ho, cls]), ctx.rois, ctx.pair_h, ctx.pair_o, fast=True).to(x.dtype)
            cls, ho = cls + dt[p:], ho + dt[:p]
        return torch.cat([torch.cat([cls[:, None], patches], 1).view(bn, d), ho])
