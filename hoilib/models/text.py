"""The text side: CoOp prompt learning over the frozen open_clip text encoder (lain-reference.md §8).

Each class prompt is `"X X ... X " + text + "."`, where the N_CTX placeholder tokens are replaced by learnable
context vectors (class-specific [T, N_CTX, W] or shared [N_CTX, W], init N(0, 0.02), class token at the end), as
in the official CLIP/customCLIP.py `PromptLearner`. Texts are LAIN's 117 verb prompts ("a photo of a person is
riding the object") or, in the paper's variant, one prompt per HOI class ("a photo of a person riding a horse").

The frozen text encoder is open_clip's: token embedding + positional embedding, the text transformer with its
causal mask, ln_final, pooling at the end-of-text token, text projection. With the causal mask, tokens after the
end-of-text token cannot influence it, so sequences are cut after the longest prompt (same result, less compute).
"""
from __future__ import annotations

import torch
from open_clip.transformer import text_global_pool
from torch import Tensor, nn

from .attention import block_dense, block_rows, check_block


def _placeholder_id(tokenizer) -> int:
    ids = tokenizer.encode("X")
    if len(ids) != 1:
        raise ValueError("the tokenizer does not encode the placeholder 'X' as one token")
    return ids[0]


def tokenize_prompts(tokenizer, texts: list, n_ctx: int, context_length: int) -> Tensor:
    """Tokenise `"X " * n_ctx + text` for every text ([N, context_length] int64), checking nothing is truncated."""
    need = [len(tokenizer.encode(t)) + n_ctx + 2 for t in texts]  # + start and end tokens
    worst = max(range(len(texts)), key=lambda i: need[i]) if texts else 0
    if texts and need[worst] > context_length:
        raise ValueError(f"prompt {texts[worst]!r} with {n_ctx} context tokens needs {need[worst]} tokens, more "
                         f"than the text encoder's context of {context_length}; lower model.n_ctx")
    prefix = " ".join(["X"] * n_ctx)
    tokens = tokenizer([f"{prefix} {t}" if n_ctx else t for t in texts]).long()
    if n_ctx and not bool((tokens[:, 1:1 + n_ctx] == _placeholder_id(tokenizer)).all()):
        raise ValueError("context placeholders were not tokenised to positions 1..n_ctx")
    return tokens


class FrozenTextEncoder(nn.Module):
    """open_clip's text tower applied to token *embeddings* (so that learnable context vectors can be inserted).

    forward(embeddings [N, L, W], tokens [N, L]) -> [N, E] (unnormalised, after the text projection).
    `causal=False` reproduces the official LAIN code, whose modified CLIP drops the text causal mask (its
    `ResidualAttentionBlock.attention` ignores the stored mask); sequences are then not cut.
    `fast` (set by the owning model, `model.fast_path`): run the layers with `attention.block_dense` (one q/k/v
    projection and SDPA per layer) instead of open_clip's Transformer, and the last one for the pooled row only
    (`attention.block_rows`); same result up to float summation order.
    """

    def __init__(self, clip: nn.Module, causal: bool = True):
        super().__init__()
        # Plain attribute (not a submodule): the CLIP weights belong to, and are frozen by, the owning model.
        self.__dict__["clip"] = clip
        self.causal = causal
        self.fast = False

    def embed(self, tokens: Tensor) -> Tensor:
        return self.clip.token_embedding(tokens)

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        clip = self.clip
        length = x.shape[1]
        if self.causal:
            length = int(tokens.argmax(-1).max()) + 1 if clip.text_pool_type == "argmax" else length
        x = x[:, :length] + clip.positional_embedding[:length].to(x.dtype)
        causal = self.causal and clip.attn_mask is not None
        blocks = clip.transformer.resblocks
        if self.fast and clip.text_pool_type == "argmax" and all(check_block(b) for b in blocks):
            for blk in blocks[:-1]:
                x = block_dense(blk, x, is_causal=causal)
            # Only the end-of-text (largest id) token is pooled: the last layer runs for that row alone.
            x = clip.ln_final(block_rows(blocks[-1], x, tokens[:, :length].argmax(-1), is_causal=causal))
        else:
            x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length].to(x.dtype) if causal else None)
            x = clip.ln_final(x)
            x = text_global_pool(x, tokens[:, :length], clip.text_pool_type,
                                 eos_token_id=getattr(clip, "text_eos_id", None))
        if clip.text_projection is not None:
            x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        return x

    @torch.no_grad()
    def encode(self, tokens: Tensor) -> Tensor:
        """Frozen embedding of plain tokenised texts [N, L] -> [N, E] (unnormalised)."""
        return self(self.embed(tokens), tokens)


class PromptLearner(nn.Module):
    """Learnable CoOp contexts for T class texts.

    Args:
        encoder: the frozen text encoder; tokenizer: open_clip tokenizer of the same model;
        texts: T class texts (without the trailing period, which is added here as in the official code);
        n_ctx: context tokens; class_specific: [T, n_ctx, W] contexts (True) or one shared [n_ctx, W] (False).
    forward() -> [T, E] L2-normalised class embeddings.
    """

    def __init__(self, encoder: FrozenTextEncoder, tokenizer, texts: list, n_ctx: int, class_specific: bool,
                 context_length: int):
        super().__init__()
        if n_ctx < 0:
            raise ValueError(f"n_ctx must be >= 0, got {n_ctx}")
        self.encoder, self.n_ctx, self.n_cls = encoder, n_ctx, len(texts)
        texts = [t.rstrip(". ") + "." for t in texts]
        tokens = tokenize_prompts(tokenizer, texts, n_ctx, context_length)
        width = encoder.clip.token_embedding.weight.shape[1]
        shape = (len(texts), n_ctx, width) if class_specific else (n_ctx, width)
        self.ctx = nn.Parameter(torch.empty(shape).normal_(std=0.02))
        with torch.no_grad():
            emb = encoder.embed(tokens)
        # Derived from the frozen CLIP at build time: not saved with the model.
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", emb[:, :1].clone(), persistent=False)  # start token
        self.register_buffer("suffix", emb[:, 1 + n_ctx:].clone(), persistent=False)  # class text, end, padding

    def forward(self) -> Tensor:
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        x = torch.cat([self.prefix, ctx.to(self.prefix.dtype), self.suffix], 1)  # [T, L, W]
        return nn.functional.normalize(self.encoder(x, self.tokens), dim=-1)
