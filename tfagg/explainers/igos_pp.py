"""iGOS++: Integrated-Gradient Optimized Saliency by bilateral perturbations (Khorram et al. 2021).

Two coarse masks are optimised per image, a deletion mask ``M_d`` and an insertion mask
``M_i`` (``m x m``, values in [0, 1], initialised to 1 = "nothing removed"). With
``U = up(M)`` the bilinear upsampling to the image and ``t_k = k / K`` (``k = 1..K``), the
*deletion* and *insertion* losses of a mask are path averages of the class score ``f_c``:

    del(U) =  1/K sum_k f_c( x ⊙ (t_k U) + b ⊙ (1 - t_k U) + ε_k )
    ins(U) = -1/K sum_k f_c( b ⊙ (t_k U) + x ⊙ (1 - t_k U) + ε_k )

(``x`` image, ``b`` baseline, ``ε_k`` Gaussian noise). A small ``M`` therefore marks pixels
whose removal destroys (deletion) or whose presence restores (insertion) the class score.
The objective minimised is (reference github khorrams/IGOS_pp, ``methods.iGOS_pp``,
``loss_function``; formulas below are cited from that code, not from paper equations)

    L = del(U_d) + ins(U_i) + del(U_d U_i) + ins(U_d U_i)
        + λ1 mean|1 - M_d M_i| + λ2 BTV(x, M_d M_i)

with the bilateral total variation (reference ``bilateral_tv_norm``; ``β`` the TV exponent)

    BTV(x, M) = 1/2 [ mean|∇_v M|^β + mean|∇_h M|^β
                      + mean(w_v ⊙ |∇_v up(M)|^β) + mean(w_h ⊙ |∇_h up(M)|^β) ]
    w_v = exp(-(mean_c ∇_v x)^2 / σ),   w_h = mean_c exp(-(∇_h x)^2 / σ)

(the two weights really are formed differently in the reference; kept as is). Each of the
``iterations`` steps takes the descent direction ``g`` = (integrated gradient of the four
model terms) / 2 + gradient of the regulariser -- the reference halves the model part to
balance it against the regulariser, but not in the loss -- and an Armijo backtracking line
search: starting
at ``α = α_u`` it accepts the first ``α`` with

    L(clip(M - α g, 0, 1)) <= L(M) - c α ||g||^2

and otherwise multiplies ``α`` by ``η``; once ``α < α_l`` it stops and takes that ``α``.
Both masks move with the same ``α`` and are clamped to [0, 1]. The saliency is
``1 - up(M_d M_i)`` (the reference returns ``M_d M_i``, low values = important, and upsamples
it bilinearly for its heat maps; we flip it so that larger = more important).

Constants (Mahlau & Nolde 2022, Appendix A, unless stated):

=====================  ===========  ==================================================
mask resolution        50 x 50      at 224 px. For other sizes we keep 50 x 50, capped
                                    at the image size (Appendix A uses the same
                                    settings for 224-px ImageNet and 128-px GTSRB).
λ1 (sparsity, L1)      20
λ2 (smoothness, BTV)   30
iterations             20
integration steps K    25
α_u, α_l               10, 1e-5
Armijo constant c      1e-4         Appendix A lists "Armijo β = 2" and "BTV β = 1e-4";
BTV exponent β         2            the reference uses c = 1e-4 and β = 2, so the
                                    appendix swapped the two. We follow the reference.
BTV smoothing σ        0.01         applied to our [0, 1] images. (The reference applies
                                    it to ImageNet-normalised images; the equivalent in
                                    [0, 1] units would be 0.01 * 0.226^2 ~ 5e-4.)
decay η                0.2
baseline               Normal       :func:`tfagg.baselines.normal_baseline`.
noise ε                0.045 std    Not in Appendix A. The reference adds N(0, 0.2^2)
                                    noise to every path image (``interval_score``,
                                    ``noise=True``) in ImageNet-normalised units;
                                    0.2 * 0.226 (mean ImageNet std) = 0.045 in [0, 1].
upsampling             bilinear     ``align_corners=True`` (torch UpsamplingBilinear2d).
score                  probability  softmax, as the reference's ``softmax_output``.
=====================  ===========  ==================================================

Deviations for speed:

* the line search's reference loss ``L(M)`` reuses the class scores of the gradient pass (same
  masks, same path, an independent noise draw) instead of evaluating the model once more -- the
  same quantity, 4K forward passes per iteration cheaper;
* the noise ``ε`` of a path image is a window of a fixed table of standard-normal numbers
  (:func:`noise_table`; the "shared noise table" of Salimans et al. 2017's evolution strategies)
  at a pseudo-random offset hashed from the image key and the sample's position in the
  algorithm, times ``noise_std``. Every image's noise is exactly
  i.i.d. ``N(0, noise_std^2)`` over its pixels, as the reference's ``torch.randn``; two path
  images draw independent offsets among ~10^5 or more (so they share noise with negligible
  probability, though windows may overlap shifted). Drawing fresh Philox normals instead cost
  12-15 ms per 128 images at 64 px -- half of the offline model's 27 ms forward pass, which iGOS++
  runs ~11,000 times per image; the table window costs ~1.4 ms.

Batching: every model evaluation (gradient pass and each line-search round) is a stream of
``images x 4 terms x K steps`` samples cut into chunks of at most ``batch_size`` (last padded),
evaluated by one traced function that builds the path images from the coarse masks on the
fly. Noise is drawn per sample from the image's stateless key and the sample's position in
the algorithm, so results do not depend on ``batch_size``. The gradient pass (``4 K`` samples
per image) is cut into equal chunks of at most ``batch_size`` (one chunk of 100 for K = 25 and
one image, not 128 slots with 28 padded). A line-search candidate also needs ``4 K`` samples, so
its chunks hold a whole number of candidates (100 of 128 slots for K = 25) or an equal share of
one; any padding left is filled with the next candidates' samples (see
:meth:`IGOSPP._line_search`), which are kept in case that candidate is reached.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np
import tensorflow as tf

from tfagg.explainers._gradients import chunk_size
from tfagg.explainers._masks import align_corners_matrix
from tfagg.explainers.base import Explainer
from tfagg.explainers.rise import check_baseline, make_baselines, stream_chunks
from tfagg.validation import check_positive_float, check_positive_int

N_TERMS = 4  # del(U_d U_i), ins(U_d U_i), del(U_d), ins(U_i)
_TERM_SIGN = np.array([1.0, -1.0, 1.0, -1.0])  # insertion losses are minus the score
_NOISE_STREAM = 2
_NOISE_TABLE_SEED = (20210605, 2)  # fixed: the table is a constant, randomness is in the offsets
_NOISE_TABLES = {}


def _block_length(sample_length: int) -> int:
    """Floats per gathered block: the largest of 24, 12, 6, 3 dividing a sample's length."""
    return next(b for b in (24, 12, 6, 3) if sample_length % b == 0)


def noise_table(h: int, w: int) -> tf.Tensor:
    """The ``(R, block)`` table of standard-normal numbers that iGOS++ noise windows come from.

    ``R * block = clip(64 * 3 h w, 2^22, 2^24)`` numbers (16 MB at 64 px, 37 MB at 224 px),
    drawn once per size from a fixed seed and cached. A sample's noise is ``3 h w / block``
    consecutive rows starting at a pseudo-random row, so offsets are multiples of ``block``
    floats (gathering whole rows is ~3x cheaper than gathering single floats).
    """
    length = 3 * h * w
    block = _block_length(length)
    total = int(np.clip(64 * length, 2**22, 2**24)) // block * block
    key = (total, block)
    if key not in _NOISE_TABLES:
        table = tf.random.stateless_normal((total,), seed=_NOISE_TABLE_SEED)
        _NOISE_TABLES[key] = tf.reshape(table, (total // block, block))
    return _NOISE_TABLES[key]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a bijective mix of uint64 words."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def noise_draws(image_keys: np.ndarray, counters: np.ndarray, num_offsets: int) -> np.ndarray:
    """Start rows in ``[0, num_offsets)`` of samples' windows of the noise table.

    Hashed from the key of each sample's image (``(M, 2)`` int) and the sample's counter (its
    position in the algorithm), so a sample's noise depends on nothing else.
    """
    keys = np.asarray(image_keys, np.int64).astype(np.uint64)
    word = (keys[:, 0] << np.uint64(32)) | (keys[:, 1] & np.uint64(0xFFFFFFFF))
    h = _splitmix64(_splitmix64(word ^ np.uint64(_NOISE_STREAM)) + np.asarray(counters, np.int64).astype(np.uint64))
    return (h % np.uint64(num_offsets)).astype(np.int32)


def _check_real(value, name: str, low: float, high: float | None = None, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"`{name}` must be a finite real number; got {value!r}")
    value = float(value)
    bad_low = value <= low if open_low else value < low
    if bad_low or (high is not None and value >= high):
        lo = f"> {low}" if open_low else f">= {low}"
        hi = "" if high is None else f" and < {high}"
        raise ValueError(f"`{name}` must be {lo}{hi}; got {value}")
    return value


class IGOSPP(Explainer):
    """iGOS++ saliency (Khorram et al. 2021) with the Appendix A settings of Mahlau & Nolde (2022).

    Parameters
    ----------
    model : keras.Model
        Classifier, RGB images in [0, 1] -> logits.
    mask_size : int >= 2
        Side of the optimised masks (50; capped at the image height / width).
    sparsity, smoothness : float >= 0
        λ1 (L1 weight, 20) and λ2 (bilateral TV weight, 30).
    iterations : int
        Optimisation steps (20).
    steps : int
        Integration steps K of the path losses (25).
    max_step, min_step : float
        Line-search step bounds α_u = 10 and α_l = 1e-5.
    armijo : float
        Armijo sufficient-decrease constant c (1e-4, reference).
    tv_exponent : float >= 1
        Exponent β of the (bilateral) total variation (2, reference).
    btv_sigma : float > 0
        Bilateral smoothing σ (0.01).
    decay : float in (0, 1)
        Step decay η of the line search (0.2).
    noise_std : float >= 0
        Std of the Gaussian noise added to every path image (0.045, see module docstring).
    baseline : {"normal", "blur", "zeros", "imagenet_mean"}
        Baseline image b (Appendix A: "normal").
    batch_size, seed, score
        See :class:`tfagg.explainers.base.Explainer`; ``score`` defaults to "probability".

    Attributes
    ----------
    last_stats : dict
        Work of the last call: ``candidates`` (line-search candidate evaluations, summed over
        images and iterations; each needs ``4 K`` forward passes), ``samples_grads`` /
        ``samples_scores`` (model inputs evaluated with / without gradient) and
        ``slots_grads`` / ``slots_scores`` (the same including chunk padding).
    """

    name = "igos_pp"
    default_score = "probability"

    def __init__(self, model, mask_size: int = 50, sparsity: float = 20.0, smoothness: float = 30.0,
                 iterations: int = 20, steps: int = 25, max_step: float = 10.0, min_step: float = 1e-5,
                 armijo: float = 1e-4, tv_exponent: float = 2.0, btv_sigma: float = 0.01, decay: float = 0.2,
                 noise_std: float = 0.045, baseline: str = "normal", batch_size: int = 64, seed: int = 0,
                 score: str = "probability"):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        self.mask_size = check_positive_int(mask_size, "mask_size", minimum=2)
        self.sparsity = check_positive_float(sparsity, "sparsity", allow_zero=True)
        self.smoothness = check_positive_float(smoothness, "smoothness", allow_zero=True)
        self.iterations = check_positive_int(iterations, "iterations")
        self.steps = check_positive_int(steps, "steps")
        self.max_step = check_positive_float(max_step, "max_step")
        self.min_step = check_positive_float(min_step, "min_step")
        if self.min_step > self.max_step:
            raise ValueError(f"`min_step` ({min_step}) must not exceed `max_step` ({max_step})")
        self.armijo = check_positive_float(armijo, "armijo", allow_zero=True)
        self.tv_exponent = _check_real(tv_exponent, "tv_exponent", 1.0)
        self.btv_sigma = check_positive_float(btv_sigma, "btv_sigma")
        self.decay = _check_real(decay, "decay", 0.0, 1.0, open_low=True)
        self.noise_std = check_positive_float(noise_std, "noise_std", allow_zero=True)
        self.baseline = check_baseline(baseline)
        self._last_stats = {}
        self._kernels = {}

    @property
    def last_stats(self) -> dict:
        """Work counters of the last call (see the class docstring)."""
        return dict(self._last_stats)

    # -- traced kernels ------------------------------------------------------------------------
    def _get_kernels(self, h: int, w: int):
        """Traced path-score kernels (with / without mask gradients) and the regulariser.

        ``kernels["scores"]`` takes chunks of :meth:`_candidate_chunk` samples; ``kernels["grads"](chunk)``
        returns the gradient kernel for chunks of ``chunk`` samples (traced once per size).
        """
        # Keyed by the hyperparameters too: traced functions capture them, so a changed
        # attribute (e.g. ``score``) must build new ones rather than silently use the old values.
        key = (h, w, self._params_key())
        if key in self._kernels:
            return self._kernels[key]
        mh, mw = min(self.mask_size, h), min(self.mask_size, w)
        rows = tf.constant(align_corners_matrix(mh, h))
        cols = tf.constant(align_corners_matrix(mw, w))
        b = self._candidate_chunk()
        model, use_softmax, noise_std = self.model, self.score == "probability", self.noise_std

        def up(m):
            return tf.einsum("hi,bij,wj->bhw", rows, m, cols)

        cols3 = tf.constant(np.repeat(align_corners_matrix(mw, w).T, 3, axis=1))  # (mw, 3 W)

        def up3(m):
            """``up(m)`` repeated over the colour channels: ``(n, h, w, 3)`` (no broadcasting later)."""
            return tf.reshape(tf.matmul(rows, tf.matmul(m, cols3)), (-1, h, w, 3))

        window = 3 * h * w // _block_length(3 * h * w)  # table rows per sample

        def path_scores(starts, diffs, labels, noise, masks_del, masks_ins, row, image_idx, term, t, noise_row):
            # A chunk uses few distinct masks (one row per image and line-search candidate), so the
            # upsampled masks times (x - b) are formed once per distinct row and then picked per
            # sample: each sample costs a handful of full-size passes (gathers, one multiply, adds)
            # instead of an upsampling and a dozen elementwise ops.
            unique_rows, local = tf.unique(row)
            n_unique = tf.shape(unique_rows)[0]
            d = tf.gather(diffs, tf.math.unsorted_segment_max(image_idx, local, n_unique))  # x - b per row
            u_del = up3(tf.gather(masks_del, unique_rows))
            u_ins = up3(tf.gather(masks_ins, unique_rows))
            which = tf.where(term < 2, 0, tf.where(term == 2, 1, 2))  # U_d U_i, U_d, U_i
            v = tf.gather(tf.concat([u_del * u_ins * d, u_del * d, u_ins * d], 0), which * n_unique + local)
            # deletion (even terms):   x ⊙ tU + b ⊙ (1 - tU) = b + t U ⊙ (x - b)
            # insertion (odd terms):   b ⊙ tU + x ⊙ (1 - tU) = x - t U ⊙ (x - b)
            deletion = term % 2 == 0
            start = tf.gather(starts, tf.where(deletion, image_idx, image_idx + tf.shape(diffs)[0]))
            inputs = start + tf.where(deletion, t, -t)[:, None, None, None] * v
            if noise_std > 0:  # ``noise`` is the table already scaled by noise_std
                eps = tf.gather(noise, noise_row[:, None] + tf.range(window)[None])
                inputs = inputs + tf.reshape(eps, (-1, h, w, 3))
            out = model(inputs, training=False)
            if use_softmax:
                out = tf.nn.softmax(out, axis=-1)
            return tf.gather(out, tf.gather(labels, image_idx), axis=1, batch_dims=1)

        def scores(starts, diffs, labels, noise, masks_del, masks_ins, row, image_idx, term, t, noise_row, weight):
            """Per-sample class scores ``(B,)`` (``weight`` unused; same signature as below)."""
            return path_scores(starts, diffs, labels, noise, masks_del, masks_ins, row, image_idx, term, t,
                               noise_row)

        def losses_and_grads(starts, diffs, labels, noise, masks_del, masks_ins, row, image_idx, term, t,
                             noise_row, weight):
            """Per-row sums of ``weight * score`` and their gradients w.r.t. the rows' masks."""
            with tf.GradientTape() as tape:
                tape.watch([masks_del, masks_ins])
                s = path_scores(starts, diffs, labels, noise, masks_del, masks_ins, row, image_idx, term, t,
                                noise_row) * weight
            g_del, g_ins = tape.gradient(s, [masks_del, masks_ins])  # gather's gradient: sparse rows
            return (tf.math.unsorted_segment_sum(s, row, tf.shape(masks_del)[0]),
                    tf.convert_to_tensor(g_del), tf.convert_to_tensor(g_ins))

        beta, sigma = self.tv_exponent, self.btv_sigma
        l1, l2 = self.sparsity, self.smoothness

        def regulariser(masks_del, masks_ins, w_v, w_h):
            with tf.GradientTape() as tape:
                tape.watch([masks_del, masks_ins])
                m = masks_del * masks_ins
                u = up(m)
                tv = (tf.reduce_mean(tf.abs(m[:, 1:] - m[:, :-1]) ** beta, axis=(1, 2))
                      + tf.reduce_mean(tf.abs(m[:, :, 1:] - m[:, :, :-1]) ** beta, axis=(1, 2))
                      + tf.reduce_mean(w_v * tf.abs(u[:, 1:] - u[:, :-1]) ** beta, axis=(1, 2))
                      + tf.reduce_mean(w_h * tf.abs(u[:, :, 1:] - u[:, :, :-1]) ** beta, axis=(1, 2)))
                reg = l1 * tf.reduce_mean(tf.abs(1.0 - m), axis=(1, 2)) + l2 * 0.5 * tv
            g_del, g_ins = tape.gradient(reg, [masks_del, masks_ins])
            return reg, g_del, g_ins

        def bilateral_weights(images):
            dv = images[:, 1:] - images[:, :-1]
            dh = images[:, :, 1:] - images[:, :, :-1]
            w_v = tf.exp(-tf.reduce_mean(dv, axis=-1) ** 2 / sigma)  # reference: channel mean, then square
            w_h = tf.reduce_mean(tf.exp(-dh ** 2 / sigma), axis=-1)  # reference: per channel, then mean
            return w_v, w_h

        img = tf.TensorSpec((None, h, w, 3), tf.float32)
        msk = tf.TensorSpec((None, mh, mw), tf.float32)
        table = tf.TensorSpec((None, _block_length(3 * h * w)), tf.float32)

        def signature(chunk):
            per_sample = [tf.TensorSpec((chunk,), tf.int32)] * 3 + [tf.TensorSpec((chunk,), tf.float32),
                                                                    tf.TensorSpec((chunk,), tf.int32),
                                                                    tf.TensorSpec((chunk,), tf.float32)]
            # starts = [baselines; images] (2N rows), diffs = images - baselines
            return [img, img, tf.TensorSpec((None,), tf.int32), table, msk, msk] + per_sample

        grad_kernels = {}

        def grads(chunk):
            if chunk not in grad_kernels:
                grad_kernels[chunk] = tf.function(functools.partial(losses_and_grads), autograph=False,
                                                  input_signature=signature(chunk))
            return grad_kernels[chunk]

        kernels = {
            "mask_hw": (mh, mw),
            "scores": tf.function(scores, autograph=False, input_signature=signature(b)),
            "grads": grads,
            "grad_kernels": grad_kernels,
            "regulariser": tf.function(regulariser, autograph=False, input_signature=[
                msk, msk, tf.TensorSpec((None, h - 1, w), tf.float32),
                tf.TensorSpec((None, h, w - 1), tf.float32)]),
            "bilateral_weights": tf.function(bilateral_weights, autograph=False, input_signature=[img]),
            "up": tf.function(up, autograph=False, input_signature=[msk]),
        }
        self._kernels[key] = kernels
        return kernels

    # -- sample streams ----------------------------------------------------------------------------
    def _run(self, kern, kind, ctx, phase, table_del, table_ins, table_image, row, term, step):
        """Evaluate path samples in chunks of at most ``batch_size``.

        Sample ``q`` is step ``step[q]`` of term ``term[q]`` for the masks in row ``row[q]`` of
        ``table_del``/``table_ins`` (that row belongs to image ``table_image[row[q]]``). Its noise
        is keyed by (image, ``phase``, term, step): ``phase`` (scalar or per sample) numbers the
        evaluations of one call (gradient pass / line-search candidate of an iteration), so, as
        in the reference, every loss evaluation draws fresh noise.

        ``kind == "scores"``: per-sample scores ``(Q,)``. ``kind == "grads"``: per-row loss
        ``sum(sign * score / K)`` and its gradients w.r.t. both masks, float64.
        """
        starts, diffs, labels, keys_np, noise = ctx
        k = self.steps
        image_idx = table_image[row]
        counters = (np.asarray(phase, np.int64) * N_TERMS + term) * k + step
        window = 3 * int(diffs.shape[1]) * int(diffs.shape[2]) // int(noise.shape[1])
        noise_row = noise_draws(keys_np[image_idx], counters, int(noise.shape[0]) - window + 1)
        t = (step + 1.0) / k  # t_k = k / K, k = 1..K (reference: linspace(1/K, 1, K))
        weight = _TERM_SIGN[term] / k
        md, mi = tf.constant(table_del, tf.float32), tf.constant(table_ins, tf.float32)
        if kind == "grads":  # equal chunks: e.g. 100 samples of one image as one chunk of 100
            bsz = chunk_size(len(row), self.batch_size)
            fn = kern["grads"](bsz)
        else:  # line search: whole candidates per chunk (padding is filled speculatively)
            bsz = self._candidate_chunk()
            fn = kern["scores"]
        out_scores = np.zeros(len(row), np.float64)
        loss = np.zeros(len(table_del), np.float64)
        g_del = np.zeros(table_del.shape, np.float64)
        g_ins = np.zeros(table_ins.shape, np.float64)
        for start, stop in stream_chunks(len(row), bsz):
            n = stop - start

            def pad(a, dtype):
                out = np.zeros((bsz,) + a.shape[1:], dtype)
                out[:n] = a[start:stop]
                return tf.constant(out)

            res = fn(starts, diffs, labels, noise, md, mi, pad(row, np.int32), pad(image_idx, np.int32),
                     pad(term, np.int32), pad(t, np.float32), pad(noise_row, np.int32), pad(weight, np.float32))
            self._last_stats["slots_" + kind] += bsz
            self._last_stats["samples_" + kind] += n
            if kind == "grads":
                loss += res[0].numpy()
                g_del += res[1].numpy()
                g_ins += res[2].numpy()
            else:
                out_scores[start:stop] = res.numpy()[:n]
        return (loss, g_del, g_ins) if kind == "grads" else out_scores

    def _candidate_chunk(self) -> int:
        """Line-search chunk size: the most whole candidates (``4 K`` samples each) that fit in
        ``batch_size``, or an equal share of one candidate if it does not fit.

        A speculative sample (of a candidate the search may never reach) is only worth computing
        in a slot that would otherwise be padding: with a chunk of 128 and 100 samples per
        candidate, 28 speculative samples per round were wasted whenever the current candidate
        was accepted (12-22 % of the line search's passes, measured on the offline model).
        """
        per = N_TERMS * self.steps
        if per <= self.batch_size:
            return per * (self.batch_size // per)
        return chunk_size(per, self.batch_size)

    def _step_sizes(self) -> np.ndarray:
        """Candidate steps ``α_u η^j`` up to and including the first one below ``α_l``."""
        alphas = [self.max_step]
        while alphas[-1] >= self.min_step:
            alphas.append(alphas[-1] * self.decay)
        return np.array(alphas, np.float64)

    def _line_search(self, kern, ctx, phase0, regulariser, m_del, m_ins, g_del, g_ins, base, decrease):
        """Armijo backtracking for every image; returns the accepted step per image.

        Image ``i`` tries ``α_j = α_u η^j`` for ``j = 0, 1, ...`` and accepts the first with
        ``L(clip(M - α_j g)) <= base + α_j * decrease``, or the first ``α_j < α_l`` (reference
        ``line_search``). All active images are evaluated together; the padding of the last
        chunk of a round is filled with samples of the images' *next* candidates (known in
        advance, since ``α_j`` does not depend on the search), which are kept and reused if
        that candidate is reached -- the same values, fewer wasted model evaluations.
        """
        n_img, per = len(m_del), N_TERMS * self.steps
        alphas = self._step_sizes()
        n_cand = len(alphas)
        cache = np.full((n_img, n_cand, per), np.nan)
        cur = np.zeros(n_img, np.int64)
        active = np.ones(n_img, bool)
        accepted = np.zeros(n_img, np.float64)
        sample_term, sample_step = np.arange(per) // self.steps, np.arange(per) % self.steps
        while active.any():
            rows = np.flatnonzero(active)
            wanted = [(i, cur[i], np.flatnonzero(np.isnan(cache[i, cur[i]]))) for i in rows]
            n_need = sum(len(s) for _, _, s in wanted)
            spare = -n_need % self._candidate_chunk()
            depth = 1
            while spare > 0 and any(cur[i] + depth < n_cand for i in rows):
                for i in rows:
                    j = cur[i] + depth
                    if spare > 0 and j < n_cand:
                        todo = np.flatnonzero(np.isnan(cache[i, j]))[:spare]
                        if len(todo):
                            wanted.append((i, j, todo))
                            spare -= len(todo)
                depth += 1
            wanted = [w for w in wanted if len(w[2])]
            if wanted:
                pairs = [(i, j) for i, j, _ in wanted]
                a = alphas[[j for _, j in pairs], None, None].astype(np.float32)
                img = np.array([i for i, _ in pairs])
                table_del = np.clip(m_del[img] - a * g_del[img], 0.0, 1.0)
                table_ins = np.clip(m_ins[img] - a * g_ins[img], 0.0, 1.0)
                row = np.concatenate([np.full(len(s), r) for r, (_, _, s) in enumerate(wanted)])
                samples = np.concatenate([s for _, _, s in wanted])
                cand_index = np.array([j for _, j in pairs])[row]
                scores = self._run(kern, "scores", ctx, phase0 + 1 + cand_index, table_del, table_ins, img,
                                   row, sample_term[samples], sample_step[samples])
                for r, (i, j, s) in enumerate(wanted):
                    cache[i, j, s] = scores[row == r]
            j_cur = cur[rows]
            a = alphas[j_cur, None, None].astype(np.float32)
            cand_del = np.clip(m_del[rows] - a * g_del[rows], 0.0, 1.0)
            cand_ins = np.clip(m_ins[rows] - a * g_ins[rows], 0.0, 1.0)
            model_loss = (cache[rows, j_cur] * (_TERM_SIGN[sample_term] / self.steps)).sum(axis=1)
            loss = model_loss + regulariser(rows, cand_del, cand_ins)[0]
            self._last_stats["candidates"] += len(rows)
            failed = loss > base[rows] + alphas[j_cur] * decrease[rows]
            retry = failed & (alphas[j_cur] >= self.min_step)
            done = rows[~retry]
            accepted[done] = alphas[cur[done]]
            active[done] = False
            cur[rows[retry]] += 1
        return accepted

    # -- driver -----------------------------------------------------------------------------------
    def _explain(self, images, labels, keys):
        n_img, h, w = (int(d) for d in images.shape[:3])
        if min(h, w) < 2:
            raise ValueError(f"`images` must be at least 2x2 pixels for iGOS++; got {h}x{w}")
        kern = self._get_kernels(h, w)
        mh, mw = kern["mask_hw"]
        keys_np = keys.numpy()
        baselines = make_baselines(self.baseline, images, keys_np)
        noise = noise_table(h, w) * self.noise_std  # once per call: 4-10 M multiplies
        ctx = (tf.concat([baselines, images], 0), images - baselines, labels, keys_np, noise)
        w_v, w_h = kern["bilateral_weights"](images)
        self._last_stats = dict.fromkeys(
            ["samples_grads", "slots_grads", "samples_scores", "slots_scores", "candidates"], 0)

        def regulariser(rows, m_del, m_ins):
            reg, gd, gi = kern["regulariser"](tf.constant(m_del, tf.float32), tf.constant(m_ins, tf.float32),
                                              tf.gather(w_v, rows), tf.gather(w_h, rows))
            return reg.numpy().astype(np.float64), gd.numpy(), gi.numpy()

        per = N_TERMS * self.steps
        all_rows = np.arange(n_img)
        grad_row = np.repeat(all_rows, per)
        grad_term = np.tile(np.arange(per) // self.steps, n_img)
        grad_step = np.tile(np.arange(per) % self.steps, n_img)
        m_del = np.ones((n_img, mh, mw), np.float32)  # reference: masks start at 1 (nothing perturbed)
        m_ins = np.ones((n_img, mh, mw), np.float32)
        phases = len(self._step_sizes()) + 1  # noise draws per iteration: gradient pass + candidates
        for it in range(self.iterations):
            loss, gd, gi = self._run(kern, "grads", ctx, it * phases, m_del, m_ins, all_rows,
                                     grad_row, grad_term, grad_step)
            reg, rgd, rgi = regulariser(all_rows, m_del, m_ins)
            # The model part of the direction is halved, the loss is not (reference iGOS_pp).
            gd = (gd / 2 + rgd).astype(np.float32)
            gi = (gi / 2 + rgi).astype(np.float32)
            # L(M): the gradient pass already evaluated the model terms at M (with its own noise
            # draw, independent of the candidates' draws -- as the reference's separate evaluation).
            base = loss + reg
            decrease = -self.armijo * (np.sum(gd.astype(np.float64) ** 2, axis=(1, 2))
                                       + np.sum(gi.astype(np.float64) ** 2, axis=(1, 2)))
            alpha = self._line_search(kern, ctx, it * phases, regulariser, m_del, m_ins, gd, gi, base,
                                      decrease)
            a = alpha[:, None, None].astype(np.float32)
            m_del = np.clip(m_del - a * gd, 0.0, 1.0)
            m_ins = np.clip(m_ins - a * gi, 0.0, 1.0)
        return 1.0 - kern["up"](tf.constant(m_del * m_ins)).numpy()
