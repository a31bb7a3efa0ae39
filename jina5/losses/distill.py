"""Embedding distillation (paper loss 1): pull the projected student onto the teacher, per text.

    L_distill = sum_i sum_{z in {x, y}} (1 - phi(psi(z_i^S), z_i^T))

phi = cosine, x = queries, y = positive documents, S = student, T = teacher. It is a SUM over the
batch and both sides (not a mean): its scale interacts with the loss weight and the learning rate,
as in the paper. It needs no pair: on a texts-only batch (B single texts in the document fields, no
queries) it is the same sum over those B texts, L = sum_i (1 - phi(psi(y_i^S), y_i^T)). psi(z) = W z + b is a linear map from the student's space into the teacher's
(``side="student"``, the paper's choice and the default). ``side="teacher"`` is the paper's
collapsing ablation: psi maps the teacher vectors into the student's space instead,
L = sum (1 - phi(z_i^S, psi(z_i^T))).

Truncated (Matryoshka) input. The projection is ONE shared ``nn.Linear(student_dim, teacher_dim)``;
a student embedding truncated to its first d <= student_dim dims uses the first d input columns of
that weight: psi_d(z) = W[:, :d] z + b. (With ``side="teacher"``, the truncated student is compared
with the first d outputs of psi: psi_d(t) = W[:d, :] t + b[:d].) So every Matryoshka granularity
trains the same projection, and the full-dim case is the plain Linear.

Initialisation (the paper is silent): bias 0; if student_dim == teacher_dim the weight is the
identity; otherwise it is a seeded random semi-orthogonal matrix (QR of a Gaussian drawn from
``torch.Generator().manual_seed(seed)``): orthonormal columns when it maps up to a larger dim (an
isometry, so cosines are preserved at init, also for every column prefix W[:, :d]), orthonormal rows
when it maps down. ``trainable=False`` freezes W and b at this init.

Warm start (``fit_projection``, also our choice): a random psi makes the first steps push the student
towards arbitrary directions (on the embedded default the dev nDCG@10 fell from 0.66 to 0.50 over the
first 50 steps before recovering). ``fit_projection(S, T)`` sets psi to the ridge least-squares map
of the untrained student's vectors S (N, D) onto the teacher's T (N, Dt) before training:

    [W b] = argmin ||S W^T + b - T||^2 + lambda ||W||^2
          = solve([S 1]^T [S 1] + lambda I', [S 1]^T T)^T   (the bias is not penalised)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jina5.losses._util import require
from jina5.losses.batch import EmbeddingBatch

SIDES = ("student", "teacher")


def semi_orthogonal_(weight: Tensor, seed: int) -> Tensor:
    """Fill an (out, in) weight in place: identity if square, else seeded semi-orthogonal (see module doc)."""
    out_dim, in_dim = weight.shape
    with torch.no_grad():
        if out_dim == in_dim:
            weight.copy_(torch.eye(out_dim, dtype=weight.dtype, device=weight.device))
            return weight
        gen = torch.Generator().manual_seed(seed)
        g = torch.randn(max(out_dim, in_dim), min(out_dim, in_dim), generator=gen, dtype=torch.float64)
        q, r = torch.linalg.qr(g)  # q: (max, min) with orthonormal columns
        sign = torch.sign(torch.diagonal(r))
        q = q * torch.where(sign == 0, torch.ones_like(sign), sign)  # unique QR: diag(r) > 0
        # drawn on the CPU (the same matrix on every device), then placed as the weight
        weight.copy_((q if out_dim > in_dim else q.T).to(device=weight.device, dtype=weight.dtype))
    return weight


class EmbeddingDistillation(nn.Module):
    """L = sum_i sum_{z in {x,y}} (1 - cos(psi(z_i^S), z_i^T)); see the module docstring.

    Shapes: query, document (B, d) with d <= student_dim (d < student_dim under Matryoshka);
    teacher_query, teacher_document (B, teacher_dim). Returns a scalar.

    Args:
        student_dim: full student embedding dim D.
        teacher_dim: teacher embedding dim Dt.
        side: "student" (psi: D -> Dt on the student, the paper's choice) or "teacher"
            (psi: Dt -> D on the teacher; collapses in the paper's ablation).
        trainable: whether W and b are optimised (False freezes them at the init).
        bias: whether psi has a bias b.
        seed: seed of the semi-orthogonal init when the dims differ.
    """

    requires: tuple[str, ...] = ("teacher_query", "teacher_document")
    needs_pairs = False  # one term per text: a texts-only batch trains it on its texts (document side)

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        side: str = "student",
        trainable: bool = True,
        bias: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if side not in SIDES:
            raise ValueError(f"EmbeddingDistillation side must be one of {SIDES}, got {side!r}")
        self.student_dim, self.teacher_dim, self.side = student_dim, teacher_dim, side
        in_dim, out_dim = (student_dim, teacher_dim) if side == "student" else (teacher_dim, student_dim)
        self.proj = nn.Linear(in_dim, out_dim, bias=bias)
        semi_orthogonal_(self.proj.weight, seed)
        if self.proj.bias is not None:
            nn.init.zeros_(self.proj.bias)
        self.proj.requires_grad_(trainable)

    @torch.no_grad()
    def fit_projection(self, student: Tensor, teacher: Tensor, ridge: float = 1e-2) -> Tensor:
        """Set psi (side="student") to the ridge least-squares map student (N, D) -> teacher (N, Dt);
        returns the mean cosine cos(psi(s_i), t_i) it reaches on the fitting set (a 0-d float32 tensor
        on the inputs' device: every tensor made here is made there, and nothing is read back)."""
        if self.side != "student":
            raise ValueError("fit_projection warm-starts the student-side projection only")
        s, t = student.double(), teacher.double()
        a = torch.cat([s, torch.ones_like(s[:, :1])], dim=1)  # (N, D + 1)
        penalty = ridge * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
        penalty[-1, -1] = 0.0
        sol = torch.linalg.solve(a.T @ a + penalty, a.T @ t)  # (D + 1, Dt)
        self.proj.weight.copy_(sol[:-1].T.to(self.proj.weight.dtype))
        if self.proj.bias is not None:
            self.proj.bias.copy_(sol[-1].to(self.proj.bias.dtype))
        return F.cosine_similarity(self.project_student(student.float()), teacher.float(), dim=-1).mean()

    def project_student(self, z: Tensor) -> Tensor:
        """psi_d(z) = W[:, :d] z + b for a (..., d) student input (side="student")."""
        d = z.shape[-1]
        if d > self.student_dim:
            raise ValueError(f"EmbeddingDistillation: student dim {d} > student_dim={self.student_dim}")
        return F.linear(z, self.proj.weight[:, :d], self.proj.bias)

    def project_teacher(self, t: Tensor, d: int) -> Tensor:
        """First d outputs of psi(t) = W t + b for a (..., teacher_dim) teacher input (side="teacher")."""
        if d > self.student_dim:
            raise ValueError(f"EmbeddingDistillation: student dim {d} > student_dim={self.student_dim}")
        b = None if self.proj.bias is None else self.proj.bias[:d]
        return F.linear(t, self.proj.weight[:d], b)

    def forward(self, batch: EmbeddingBatch) -> Tensor:
        require(batch, batch.applicable(self.requires), "EmbeddingDistillation")
        loss = batch.document.new_zeros(())
        sides = [(batch.document, batch.teacher_document)]  # a texts-only batch: its texts, one term each
        if not batch.texts_only:
            sides.insert(0, (batch.query, batch.teacher_query))
        for s, t in sides:
            t = t.detach().to(s.dtype)
            if t.shape[-1] != self.teacher_dim:
                raise ValueError(
                    f"EmbeddingDistillation: teacher vectors have dim {t.shape[-1]}, expected teacher_dim={self.teacher_dim}"
                )
            if self.side == "student":
                a, b = self.project_student(s), t
            else:
                a, b = s, self.project_teacher(t, s.shape[-1])
            loss = loss + (1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)).sum()
        return loss
