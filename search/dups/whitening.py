"""Collection-aware similarity: PCA whitening fitted on the library's own vectors.

Raw DINOv2 cosines crowd together: unrelated photos of one kind (facades, beaches) sit at 0.92-0.97
while a grey copy or a 20 % crop of the same photo can fall to 0.8. Whitening with the
collection's own statistics spreads the directions the collection shares and weights the ones that
tell its images apart, as in the copy-detection literature (e.g. the DISC21 baselines).
"""

from dataclasses import dataclass

import numpy as np

# Measured in bench/results/dups_research.md (877 real photos and copies, DINOv2-S/14):
# raw cosine reaches pair F1 0.92 with the auto threshold; whitening with these settings 0.975.
MIN_VECTORS_TO_WHITEN = 100  # below this, a fit is no better than raw cosine (F1 0.88-0.94)
MAX_DIMS = 128  # with the eigenvalue floor below, F1 is flat from 64 to 384 dims
SHRINKAGE = 1.0  # eigenvalue floor, in units of the mean eigenvalue; without it F1 collapses
WHITEN_SAMPLE = 100_000  # vectors used to fit: plenty for a D x D covariance


@dataclass
class Whitening:
    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (D, K)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Centre, project, scale and re-normalise; rows stay unit length."""
        out = (np.asarray(vectors, np.float32) - self.mean) @ self.projection
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def to_bytes(self) -> bytes:
        d, k = self.projection.shape
        header = np.array([d, k], dtype=np.float32)
        return np.concatenate([header, self.mean, self.projection.ravel()]).astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Whitening":
        arr = np.frombuffer(data, dtype="<f4")
        d, k = int(arr[0]), int(arr[1])
        return cls(arr[2 : 2 + d].copy(), arr[2 + d :].reshape(d, k).copy())


def fit_whitening(
    vectors: np.ndarray, dims: int | None = None, shrinkage: float = SHRINKAGE, seed: int = 0
) -> Whitening | None:
    """PCA whitening of (a sample of) the vectors, or None when there are too few."""
    n, d = vectors.shape
    if n < MIN_VECTORS_TO_WHITEN:
        return None
    dims = dims or min(MAX_DIMS, n // 4, d)
    if n > WHITEN_SAMPLE:
        vectors = vectors[np.random.default_rng(seed).choice(n, WHITEN_SAMPLE, replace=False)]
    x = vectors.astype(np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals = np.clip(eigvals, 0, None)
    floor = shrinkage * float(np.mean(eigvals))  # the mean over all D eigenvalues
    order = np.argsort(eigvals)[::-1][:dims]
    projection = eigvecs[:, order] / np.sqrt(eigvals[order] + floor + 1e-12)
    return Whitening(mean.astype(np.float32), projection.astype(np.float32))
