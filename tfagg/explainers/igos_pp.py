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

Deviation for speed: the line search's reference loss ``L(M)`` reuses the class scores of
the gradient pass (same masks, same path, an independent noise draw) instead of evaluating
the model once more -- the same quantity, 4K forward passes per iteration cheaper.

Batching: every model evaluation (gradient pass and each line-search round) is a stream of
``images x 4 terms x K steps`` samples cut into chunks of exactly ``batch_size`` (last padded),
evaluated by one traced function that builds the path images from the coarse masks on the
fly. Noise is drawn per sample from the image's stateless key and the sample's position in
the algorithm, so results do not depend on ``batch_size``.
"""
from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from tfagg.explainers._masks import align_corners_matrix, sample_seeds
from tfagg.explainers.base import Explainer
from tfagg.explainers.rise import check_baseline, make_baselines, stream_chunks
from tfagg.validation import check_positive_float, check_positive_int

N_TERMS = 4  # del(U_d U_i), ins(U_d U_i), del(U_d), ins(U_i)
_TERM_SIGN = np.array([1.0, -1.0, 1.0, -1.0])  # insertion losses are minus the score
_NOISE_STREAM = 2


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
        """Traced path-score kernels (with / without mask gradients) and the regulariser."""
        # Keyed by the hyperparameters too: traced functions capture them, so a changed
        # attribute (e.g. ``score``) must build new ones rather than silently use the old values.
        key = (h, w, self._params_key())
        if key in self._kernels:
            return self._kernels[key]
        mh, mw = min(self.mask_size, h), min(self.mask_size, w)
        rows = tf.constant(align_corners_matrix(mh, h))
        cols = tf.constant(align_corners_matrix(mw, w))
        b = self.batch_size
        model, use_softmax, noise_std = self.model, self.score == "probability", self.noise_std

        def up(m):
            return tf.einsum("hi,bij,wj->bhw", rows, m, cols)

        def path_scores(diffs, baselines, labels, m_del, m_ins, image_idx, term, t, seeds):
            u_del, u_ins = up(m_del), up(m_ins)
            u = tf.where((term < 2)[:, None, None], u_del * u_ins,
                         tf.where((term == 2)[:, None, None], u_del, u_ins))
            a = t[:, None, None] * u
            # deletion:  x ⊙ a + b ⊙ (1 - a) = b + a (x - b)
            # insertion: b ⊙ a + x ⊙ (1 - a) = b + (1 - a)(x - b)
            coeff = tf.where((term % 2 == 0)[:, None, None], a, 1.0 - a)
            inputs = tf.gather(baselines, image_idx) + coeff[..., None] * tf.gather(diffs, image_idx)
            if noise_std > 0:
                noise = tf.map_fn(lambda s: tf.random.stateless_normal((h, w, 3), seed=s), seeds,
                                  fn_output_signature=tf.float32)
                inputs = inputs + noise_std * noise
            out = model(inputs, training=False)
            if use_softmax:
                out = tf.nn.softmax(out, axis=-1)
            return tf.gather(out, tf.gather(labels, image_idx), axis=1, batch_dims=1)

        def scores(diffs, baselines, labels, masks_del, masks_ins, row, image_idx, term, t, seeds, weight):
            """Per-sample class scores ``(B,)`` (``weight`` unused; same signature as below)."""
            m_del, m_ins = tf.gather(masks_del, row), tf.gather(masks_ins, row)
            return path_scores(diffs, baselines, labels, m_del, m_ins, image_idx, term, t, seeds)

        def losses_and_grads(diffs, baselines, labels, masks_del, masks_ins, row, image_idx, term, t, seeds,
                             weight):
            """Per-row sums of ``weight * score`` and their gradients w.r.t. the row's masks."""
            m_del, m_ins = tf.gather(masks_del, row), tf.gather(masks_ins, row)
            with tf.GradientTape() as tape:
                tape.watch([m_del, m_ins])
                s = path_scores(diffs, baselines, labels, m_del, m_ins, image_idx, term, t, seeds) * weight
            g_del, g_ins = tape.gradient(s, [m_del, m_ins])
            n_rows = tf.shape(masks_del)[0]
            return (tf.math.unsorted_segment_sum(s, row, n_rows),
                    tf.math.unsorted_segment_sum(g_del, row, n_rows),
                    tf.math.unsorted_segment_sum(g_ins, row, n_rows))

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
        per_sample = [tf.TensorSpec((b,), tf.int32)] * 3 + [tf.TensorSpec((b,), tf.float32),
                                                            tf.TensorSpec((b, 2), tf.int32),
                                                            tf.TensorSpec((b,), tf.float32)]
        sig = [img, img, tf.TensorSpec((None,), tf.int32), msk, msk] + per_sample
        kernels = {
            "mask_hw": (mh, mw),
            "scores": tf.function(scores, autograph=False, input_signature=sig),
            "losses_and_grads": tf.function(losses_and_grads, autograph=False, input_signature=sig),
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
        """Evaluate path samples in chunks of exactly ``batch_size``.

        Sample ``q`` is step ``step[q]`` of term ``term[q]`` for the masks in row ``row[q]`` of
        ``table_del``/``table_ins`` (that row belongs to image ``table_image[row[q]]``). Its noise
        is keyed by (image, ``phase``, term, step): ``phase`` (scalar or per sample) numbers the
        evaluations of one call (gradient pass / line-search candidate of an iteration), so, as
        in the reference, every loss evaluation draws fresh noise.

        ``kind == "scores"``: per-sample scores ``(Q,)``. ``kind == "grads"``: per-row loss
        ``sum(sign * score / K)`` and its gradients w.r.t. both masks, float64.
        """
        diffs, baselines, labels, keys_np = ctx
        k, bsz = self.steps, self.batch_size
        image_idx = table_image[row]
        counters = (np.asarray(phase, np.int64) * N_TERMS + term) * k + step
        seeds = sample_seeds(keys_np[image_idx], _NOISE_STREAM, counters)
        t = (step + 1.0) / k  # t_k = k / K, k = 1..K (reference: linspace(1/K, 1, K))
        weight = _TERM_SIGN[term] / k
        md, mi = tf.constant(table_del, tf.float32), tf.constant(table_ins, tf.float32)
        fn = kern["losses_and_grads"] if kind == "grads" else kern["scores"]
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

            res = fn(diffs, baselines, labels, md, mi, pad(row, np.int32), pad(image_idx, np.int32),
                     pad(term, np.int32), pad(t, np.float32), pad(seeds, np.int32), pad(weight, np.float32))
            self._last_stats["slots_" + kind] += bsz
            self._last_stats["samples_" + kind] += n
            if kind == "grads":
                loss += res[0].numpy()
                g_del += res[1].numpy()
                g_ins += res[2].numpy()
            else:
                out_scores[start:stop] = res.numpy()[:n]
        return (loss, g_del, g_ins) if kind == "grads" else out_scores

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
            spare = -n_need % self.batch_size
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
        ctx = (images - baselines, baselines, labels, keys_np)
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
