"""Insertion and deletion metrics (Mahlau & Nolde 2022, Sec. 4; Petsiuk et al. 2018, Sec. 4.1).

*Insertion* starts from a baseline image and inserts the image's pixels (all three channels) in
order of decreasing attribution; *deletion* starts from the image and replaces its pixels by the
baseline in the same order. After every increment the model's probability of the class of
interest, ``softmax(logits)[label]``, is recorded. With ``T = steps`` increments (the paper uses
1000) a curve has ``T + 1`` points at ``x_i = i / T`` (fraction of changed pixels), and

.. math:: \\mathrm{AUC} = \\frac{1}{T}\\Big(\\tfrac12 c_0 + \\sum_{i=1}^{T-1} c_i + \\tfrac12 c_T\\Big)

(trapezoid rule on [0, 1]). Higher insertion AUC and lower deletion AUC mean a more faithful map.

Choices where the paper is silent
---------------------------------
* Step schedule: after step ``i`` exactly ``floor(i * H * W / T)`` pixels are changed
  (:func:`tfagg.metrics.ranking.step_schedule`), so every pixel changes exactly once.
* Ties in the attribution are broken by a seeded random permutation per image (the paper: zero
  attributions "are in turn inserted or deleted in random order", Sec. 4.1). Scores depend only on
  the order of the saliency values.
* Baseline: the paper's random Normal baseline (per-channel mean/std of the image,
  :func:`tfagg.baselines.normal_baseline`), drawn once per image from ``(seed, image index)`` and
  shared by insertion, deletion and all maps of the image, so maps are compared on equal terms.
* Class of interest: whatever ``labels`` says; ``labels=None`` uses the model's top-1 prediction
  on the clean image (RISE's convention -- it explains the predicted class).

Speed
-----
The perturbed images of all steps are built with tensor ops from one per-pixel "step at which this
pixel changes" map (``image_t = where(step_of_pixel <= t, image, baseline)``), and the inputs of
all steps, maps and images of a call are packed into full batches of ``batch_size`` that go through
one traced function with fixed shapes (only the very last batch of a call is padded). The clean
image and the baseline are each evaluated once per image: they are insertion's last / first point
and deletion's first / last point for every map. Perturbed inputs that coincide are evaluated
once: when two maps of an image change the same *set* of pixels by step ``t`` (identical
rankings, ties, or maps that agree on their top pixels), their step-``t`` inputs are identical
and share one forward pass. A call evaluates at most ``N * (2 + 2 * M * (steps - 1))`` model
inputs (``result.model_inputs`` tells how many); on the maps of the offline reproduction run
9-12 % of the perturbed inputs coincide.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfagg.baselines import blur_baseline, normal_baseline, scaled_blur_parameters, zeros_baseline
from tfagg.batching import pad_to
from tfagg.metrics.auc import auc, curve_fractions
from tfagg.metrics.ranking import change_steps, tie_break_keys, TIE_BREAK_STREAM
from tfagg.random import per_image_keys
from tfagg.validation import check_images, check_labels, check_positive_int, num_classes_of

BASELINES = ("normal", "zeros", "blur")
BASELINE_STREAM = "insertion_deletion/baseline"

# Host + graph memory allowed for one group of images (images, baselines, step maps and the
# float64 sort temporaries); groups only bound memory -- batches stay full across groups.
_GROUP_BYTES = 256 * 2**20
_MAX_CACHED_SCORERS = 4


@dataclass
class InsertionDeletionResult:
    """AUCs (float64) and optionally curves (float32) of :func:`insertion_deletion`.

    Shapes: ``insertion``/``deletion`` are ``(N,)`` for ``(N, H, W)`` saliency and ``(N, M)`` for
    ``(N, M, H, W)``; curves add a last axis of ``steps + 1`` points at :attr:`fractions`.
    Dict-style access (``result["insertion"]``) works too.
    """

    insertion: np.ndarray
    deletion: np.ndarray
    steps: int
    insertion_curve: np.ndarray | None = None
    deletion_curve: np.ndarray | None = None
    model_inputs: int = 0  # forward passes evaluated (coinciding perturbed inputs count once)
    nominal_inputs: int = 0  # forward passes without sharing coinciding inputs

    @property
    def fractions(self) -> np.ndarray:
        """x-axis of the curves: fraction of changed pixels, ``i / steps``."""
        return curve_fractions(self.steps)

    def __getitem__(self, key):
        if key not in ("insertion", "deletion", "insertion_curve", "deletion_curve", "steps"):
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return ["insertion", "deletion", "steps"] + (
            ["insertion_curve", "deletion_curve"] if self.insertion_curve is not None else []
        )


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _check_saliency(saliency, n: int, h: int, w: int):
    """Return ``(float64 (N, M, H, W), had_map_axis)``; float64 keeps the order of float64 input."""
    arr = np.asarray(saliency.numpy() if hasattr(saliency, "numpy") else saliency)
    if arr.dtype == bool:
        arr = arr.astype(np.int8)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"`saliency` must be real-valued; got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape == (n, h, w):
        had_map_axis = False
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[0] == n and arr.shape[2:] == (h, w) and arr.shape[1] >= 1:
        had_map_axis = True
    else:
        raise ValueError(
            f"`saliency` must have shape (N, H, W) = {(n, h, w)} (one map per image) or "
            f"(N, M, H, W) = ({n}, M, {h}, {w}) (M maps per image) to match `images`; got {arr.shape}"
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr.reshape(arr.shape[0], arr.shape[1], -1)).any(-1))
        raise ValueError(
            f"`saliency` contains NaN or inf (first offending (image, map): {tuple(bad[0])}); "
            "insertion/deletion need a total order of the pixels"
        )
    return arr, had_map_axis


def _check_baseline(baseline, shape):
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(f"`baseline` must be one of {BASELINES} or an array of shape {shape}; got {baseline!r}")
        return baseline
    arr = np.asarray(baseline.numpy() if hasattr(baseline, "numpy") else baseline)
    if arr.shape != tuple(shape):
        raise ValueError(
            f"`baseline` array must have the shape of `images` {tuple(shape)} (one baseline image "
            f"per image); got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"`baseline` must be real-valued; got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("`baseline` contains NaN or inf")
    return arr


def _check_seed(seed, n: int):
    """An int, or ``n`` per-image ints (returned as a list)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    arr = np.asarray(seed)
    if arr.ndim == 1 and arr.shape[0] == n and np.issubdtype(arr.dtype, np.integer):
        return [int(v) for v in arr]
    raise TypeError(f"`seed` must be an integer or a sequence of {n} integers (one per image); got {seed!r}")


def _image_keys(seed, n: int, stream: str) -> tf.Tensor:
    """``(n, 2)`` keys of ``stream``: from ``(seed, i)`` for an int seed; for per-image seeds, image
    ``i`` gets the key it would have as the only image of a call with seed ``seed[i]``."""
    if isinstance(seed, int):
        return per_image_keys(seed, n, stream)
    return tf.concat([per_image_keys(s, 1, stream) for s in seed], axis=0)


def _baseline_images(baseline, images: np.ndarray, keys) -> tf.Tensor:
    """Baselines of a group of images (``keys``: their rows of the per-image baseline keys)."""
    x = tf.constant(images)
    if baseline == "normal":
        return normal_baseline(x, keys)
    if baseline == "zeros":
        return zeros_baseline(x)
    sigma, kernel = scaled_blur_parameters(images.shape[1])  # tfagg images are square
    return blur_baseline(x, sigma=sigma, kernel_size=kernel)


# ----------------------------------------------------------------------------------------------
# traced evaluation
# ----------------------------------------------------------------------------------------------
class PerturbationScorer:
    """Builds perturbed inputs from step maps and scores them in fixed-size batches.

    One instance per (model, batch_size, H, W); its ``tf.function`` s trace once each: ``fused``
    (build + score a full batch: the common path), ``build`` (any number of inputs, used only
    where a batch straddles two groups of images), ``score`` (a full batch of prepared inputs)
    and ``predict`` (top-1 class).

    Inputs are built by one ``tf.where`` per batch between the flattened image and its baseline
    (rows of a per-group table: the group's images, then their baselines), with the step maps
    stored once per colour channel so that the condition has the inputs' shape: a select without
    broadcasting over channels, which on CPU costs ~1.9 ms per batch of 128 at 64 px against
    ~2.4-3.3 ms for a per-pixel gather and ~5-6 ms for a channel-broadcasting select or a blend.
    When a batch holds one image (the common case) image and baseline broadcast over the batch;
    otherwise their rows are gathered. A select copies values, so the inputs are bit-identical
    to a naive ``where(changed, image, baseline)``.
    """

    def __init__(self, model, batch_size: int, height: int, width: int):
        self.model = model
        self.batch_size = batch_size
        self.height, self.width = height, width
        b, h, w = batch_size, height, width
        table_specs = (
            tf.TensorSpec([None, h * w * 3], tf.float32),  # the group's G images, then their baselines
            tf.TensorSpec([], tf.int32),  # G
            tf.TensorSpec([None, h * w * 3], tf.int32),  # step maps per channel, row = image * M + map
        )

        def item_specs(k):
            return (
                tf.TensorSpec([k], tf.int32),  # image row in the group
                tf.TensorSpec([k], tf.int32),  # step-map row
                tf.TensorSpec([k], tf.int32),  # step t: pixels with step_of_pixel <= t are changed
                tf.TensorSpec([k], tf.bool),  # True = deletion (changed pixels show the baseline)
            )

        label_spec = tf.TensorSpec([b], tf.int32)
        self.build = tf.function(self._build, input_signature=table_specs + item_specs(None))
        self.score = tf.function(self._score, input_signature=(tf.TensorSpec([b, h, w, 3], tf.float32), label_spec))
        self.fused = tf.function(
            lambda *a: self._score(self._build(*a[:7]), a[7]),
            input_signature=table_specs + item_specs(b) + (label_spec,),
        )
        self.predict = tf.function(
            lambda x: tf.argmax(self.model(x, training=False), axis=-1, output_type=tf.int32),
            input_signature=(tf.TensorSpec([b, h, w, 3], tf.float32),),
        )

    @staticmethod
    def pixel_table(images, baselines) -> tf.Tensor:
        """``(2 G, H W 3)``: the flattened ``images`` followed by their ``baselines``."""
        x = tf.concat([tf.cast(images, tf.float32), tf.cast(baselines, tf.float32)], 0)
        return tf.reshape(x, (tf.shape(x)[0], -1))

    @staticmethod
    def channel_step_maps(step_maps: np.ndarray) -> tf.Tensor:
        """``(R, H W)`` step maps repeated per colour channel: ``(R, H W 3)``."""
        return tf.constant(np.repeat(step_maps.astype(np.int32), 3, axis=1))

    def _build(self, table, num_images, step_maps, image_row, map_row, t, deletion):
        changed = tf.gather(step_maps, map_row) <= t[:, None]
        # insertion shows the image where a pixel has changed, deletion where it has not
        from_image = tf.math.logical_xor(changed, deletion[:, None])
        first = image_row[0]

        def one_image():  # image and baseline broadcast over the batch: no gathered copies
            return tf.where(from_image, table[first][None], table[first + num_images][None])

        def several_images():
            return tf.where(from_image, tf.gather(table, image_row), tf.gather(table, image_row + num_images))

        pixels = tf.cond(tf.reduce_all(tf.equal(image_row, first)), one_image, several_images)
        return tf.reshape(pixels, (-1, self.height, self.width, 3))

    def _score(self, x, labels):
        logits = tf.cast(self.model(x, training=False), tf.float32)
        return tf.gather(tf.nn.softmax(logits, axis=-1), labels, axis=1, batch_dims=1)

    def predicted_labels(self, images: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = tf.constant(images[i : i + self.batch_size])
            k = int(chunk.shape[0])
            out.append(self.predict(pad_to(chunk, self.batch_size)).numpy()[:k])
        return np.concatenate(out)


_SCORERS: "OrderedDict[tuple, PerturbationScorer]" = OrderedDict()


def _scorer_for(model, batch_size: int, height: int, width: int) -> PerturbationScorer:
    """Reuse traced functions across calls (tracing a ResNet18 takes seconds); small LRU cache."""
    key = (id(model), batch_size, height, width)
    scorer = _SCORERS.get(key)
    if scorer is None or scorer.model is not model:
        scorer = PerturbationScorer(model, batch_size, height, width)
        _SCORERS[key] = scorer
    _SCORERS.move_to_end(key)
    while len(_SCORERS) > _MAX_CACHED_SCORERS:
        _SCORERS.popitem(last=False)
    return scorer


_SET_HASHES = 3  # independent 32-bit random pixel weights; see _changed_set_hashes


def _changed_set_hashes(step_maps: np.ndarray, steps: int) -> np.ndarray:
    """``(M, steps - 1, 3)`` fingerprints of the pixel sets changed by steps ``1 .. steps - 1``.

    ``step_maps`` is ``(M, P)``: the step at which each pixel changes, per map. The set changed by
    step ``t`` is ``{p : step[p] <= t}``; its fingerprint is ``sum_{p in set} r_k[p]`` for three
    fixed vectors of random integers ``r_k[p] < 2^32`` -- exact in float64 (the sums stay below
    2^53) and computed for all ``t`` at once by a bincount over steps and a cumulative sum. Two
    different sets get equal fingerprints with probability <= 2^-96, so equal fingerprints at
    the same ``t`` mean equal sets, i.e. identical perturbed inputs.
    """
    m, p = step_maps.shape
    weights = np.random.default_rng(0x1D5E7).integers(0, 2**32, size=(_SET_HASHES, p)).astype(np.float64)
    bins = (np.arange(m, dtype=np.int64)[:, None] * (steps + 1) + step_maps).ravel()
    out = np.empty((m, steps - 1, _SET_HASHES))
    for k in range(_SET_HASHES):
        per_step = np.bincount(bins, weights=np.broadcast_to(weights[k], (m, p)).ravel(), minlength=m * (steps + 1))
        out[:, :, k] = np.cumsum(per_step.reshape(m, steps + 1), axis=1)[:, 1:steps]
    return out


def _shared_items(step_maps: np.ndarray, steps: int, num_curves: int):
    """Which items of a group of images are evaluated, and where every item's score comes from.

    ``step_maps`` is ``(G, M, P)``. Returns ``(unique_ids, source)``: the local item ids (see
    :func:`_item_descriptors`) that are evaluated, ascending, and for every local item id the
    position of the evaluated item that has the same input. Map ``m``'s step-``t`` input (either
    curve) is taken from the first map ``m' <= m`` of the image that changes the same pixel set
    by step ``t``.
    """
    g, m, _ = step_maps.shape
    inner = steps - 1
    k = 2 + num_curves * m * inner
    ids = np.arange(g * k, dtype=np.int64)
    if m == 1 or inner == 0:
        return ids, ids
    rep = np.empty((g, m, inner), np.int64)  # first map with the same set at (image, t)
    for i in range(g):
        fp = _changed_set_hashes(step_maps[i], steps)  # (M, T-1, 3)
        t_index = np.broadcast_to(np.arange(inner, dtype=np.float64)[None, :, None], (m, inner, 1))
        rows = np.concatenate([t_index, fp], axis=2).reshape(m * inner, -1)
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        rep[i] = (first[inverse.ravel()] // inner).reshape(m, inner)  # flat index = map * inner + t
    image = np.arange(g, dtype=np.int64)[:, None, None, None]
    curve = np.arange(num_curves, dtype=np.int64)[None, None, :, None]
    t = np.arange(inner, dtype=np.int64)[None, None, None, :]
    source_id = image * k + 2 + (rep[:, :, None, :] * num_curves + curve) * inner + t  # (G, M, C, T-1)
    source = ids.copy()
    perturbed = (ids % k) >= 2
    source[perturbed] = source_id.ravel()
    unique_ids = ids[source == ids]
    return unique_ids, np.searchsorted(unique_ids, source)


def _item_descriptors(local_ids: np.ndarray, num_maps: int, steps: int, deletion_modes: np.ndarray):
    """Decode item ids of a group into (image row, step-map row, t, deletion).

    Items of image ``n`` are ``[clean, baseline]`` followed, per map, by ``t = 1..T-1`` of each
    requested curve (``deletion_modes``: False = insertion, True = deletion) -- ``K = 2 + M D
    (T - 1)`` items for ``D`` curves -- so item ``n * K + r`` of a call is also the position of its
    score in the output. Clean = insertion at ``t = T`` and baseline = insertion at ``t = 0`` (every
    pixel changes at a step in 1..T), which lets one kernel build all of them.
    """
    inner = max(steps - 1, 1)
    per_map = len(deletion_modes) * (steps - 1)
    k = 2 + num_maps * per_map
    image_row, r = np.divmod(local_ids, k)
    m, u = np.divmod(np.maximum(r - 2, 0), max(per_map, 1))
    mode, t_inner = np.divmod(u, inner)
    shared = r < 2
    deletion = np.where(shared, False, deletion_modes[np.minimum(mode, len(deletion_modes) - 1)])
    t = np.where(r == 0, steps, np.where(r == 1, 0, t_inner + 1))
    map_row = image_row * num_maps + np.where(shared, 0, m)
    return image_row.astype(np.int32), map_row.astype(np.int32), t.astype(np.int32), deletion.astype(bool)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def insertion_deletion(
    model,
    images,
    labels,
    saliency,
    steps: int = 1000,
    baseline="normal",
    seed: int = 0,
    batch_size: int = 64,
    return_curves: bool = False,
    progress: bool = False,
) -> InsertionDeletionResult:
    """Insertion and deletion AUCs (Mahlau & Nolde 2022, Sec. 4) of saliency maps.

    Parameters
    ----------
    model : keras.Model
        Classifier mapping ``(B, H, W, 3)`` RGB images in [0, 1] to ``(B, C)`` *logits*; the
        recorded score is ``softmax(logits)[label]``.
    images : (N, H, W, 3) array in [0, 1]
    labels : (N,) int, scalar, or None
        Class of interest per image. ``None`` (the RISE convention) uses the model's top-1
        prediction on the clean image; pass the true labels to score those classes instead.
    saliency : (N, H, W) or (N, M, H, W) array
        One map per image, or ``M`` maps per image evaluated together in one batch stream (all
        maps of an image share its baseline and tie-break order). Only the order of the values
        matters; NaN/inf are rejected.
    steps : int
        Number of increments ``T``, ``1 <= T <= H * W`` (paper: 1000). After step ``i``,
        ``floor(i * H * W / T)`` pixels are changed.
    baseline : {"normal", "zeros", "blur"} or (N, H, W, 3) array
        ``"normal"`` (paper): per-image, per-channel Normal sample
        (:func:`tfagg.baselines.normal_baseline`, seeded by ``(seed, image index)``). ``"blur"``:
        :func:`tfagg.baselines.blur_baseline` with Appendix A's parameters scaled to ``H``.
    seed : int or (N,) ints
        Seeds the Normal baseline and the random tie-breaking; image ``i`` depends only on
        ``(seed, i)``, not on ``batch_size`` or on the other images of the call. A sequence gives
        one seed per image (e.g. derived from a run seed and dataset image ids): image ``i`` is then
        scored exactly as in a single-image call with ``seed=seed[i]``.
    batch_size : int
        Model inputs per forward pass (memory bound). Results do not depend on it.
    return_curves : bool
        Also return the curves, shape ``(..., steps + 1)`` at x = ``result.fractions``.
    progress : bool
        Show a tqdm progress bar (with ETA) over forward batches.

    Returns
    -------
    InsertionDeletionResult
        ``insertion``, ``deletion``: float64 AUCs of shape ``(N,)`` or ``(N, M)``.
    """
    return _run(model, images, labels, saliency, steps, baseline, seed, batch_size, return_curves, progress,
                curves=("insertion", "deletion"))


def _run(model, images, labels, saliency, steps, baseline, seed, batch_size, return_curves, progress, curves):
    x = check_images(images)
    n, h, w, _ = x.shape
    num_pixels = h * w
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps", maximum=num_pixels)
    seed = _check_seed(seed, n)
    num_classes = num_classes_of(model)
    expected = tuple(model.input_shape[1:3]) if getattr(model, "input_shape", None) else None
    if expected and None not in expected and (h, w) != expected:
        raise ValueError(f"`images` are {h}x{w} but the model expects {expected[0]}x{expected[1]}")
    sal, had_map_axis = _check_saliency(saliency, n, h, w)
    baseline = _check_baseline(baseline, x.shape)
    scorer = _scorer_for(model, batch_size, h, w)
    y = scorer.predicted_labels(x) if labels is None else check_labels(labels, n, num_classes)

    m = sal.shape[1]
    deletion_modes = np.array([c == "deletion" for c in curves])
    items_per_image = 2 + len(curves) * m * (steps - 1)
    scores, evaluated = _evaluate(scorer, x, y, sal, steps, baseline, seed, items_per_image, deletion_modes,
                                  progress)

    v = scores.reshape(n, items_per_image)
    clean = np.broadcast_to(v[:, None, None, 0], (n, m, 1))
    base = np.broadcast_to(v[:, None, None, 1], (n, m, 1))
    mid = v[:, 2:].reshape(n, m, len(curves), steps - 1)
    ends = {"insertion": (base, clean), "deletion": (clean, base)}
    result = {}
    for j, name in enumerate(curves):
        curve = np.concatenate([ends[name][0], mid[:, :, j], ends[name][1]], axis=-1)
        if not had_map_axis:
            curve = curve[:, 0]
        if not np.all(np.isfinite(curve)):
            raise FloatingPointError("the model produced non-finite probabilities on perturbed images")
        result[name] = (auc(curve), curve if return_curves else None)
    empty = (None, None)
    return InsertionDeletionResult(
        insertion=result.get("insertion", empty)[0],
        deletion=result.get("deletion", empty)[0],
        steps=steps,
        insertion_curve=result.get("insertion", empty)[1],
        deletion_curve=result.get("deletion", empty)[1],
        model_inputs=int(evaluated),
        nominal_inputs=int(n * items_per_image),
    )


def _group_tables(x, sal, baseline, base_keys, tie_keys, g0: int, g1: int, steps: int):
    """Graph inputs describing images ``g0:g1``: pixel table, G and their step maps."""
    xg = x[g0:g1]
    if isinstance(baseline, str):
        base_g = _baseline_images(baseline, xg, None if base_keys is None else base_keys[g0:g1])
    else:
        base_g = baseline[g0:g1]
    steps_g = change_steps(sal[g0:g1], tie_break_keys(tie_keys[g0:g1], xg.shape[1] * xg.shape[2]), steps)
    steps_g = steps_g.reshape(steps_g.shape[0], steps_g.shape[1], -1)  # (G, M, H W)
    tables = (
        PerturbationScorer.pixel_table(xg, base_g),
        tf.constant(g1 - g0, tf.int32),
        PerturbationScorer.channel_step_maps(steps_g.reshape(steps_g.shape[0] * steps_g.shape[1], -1)),
    )
    return tables, steps_g


def _evaluate(scorer, x, y, sal, steps, baseline, seed, items_per_image, deletion_modes, progress):
    """Scores of all items of a call, in item order (see :func:`_item_descriptors`), and the
    number of model inputs evaluated.

    Images are processed in groups that bound memory (pixel table, step maps, sort temporaries);
    within a group only items with distinct inputs are evaluated (:func:`_shared_items`), and the
    stream of evaluated items runs on across groups so that every batch but the call's last is
    full: the few inputs of a batch that straddles two groups are built separately and
    concatenated.
    """
    n, m, h, w = sal.shape
    b = scorer.batch_size
    per_image_bytes = h * w * (2 * 3 * 4 + m * (4 + 3 * 4 + 3 * 8) + 16)
    group = max(1, _GROUP_BYTES // per_image_bytes)
    base_keys = _image_keys(seed, n, BASELINE_STREAM) if isinstance(baseline, str) and baseline == "normal" else None
    tie_keys = _image_keys(seed, n, TIE_BREAK_STREAM)

    evaluated = np.empty(n * items_per_image, np.float32)  # scores of evaluated items, in stream order
    expansions = []  # (first item of the group, first evaluated score of the group, source positions)
    written = 0
    pending_x, pending_y = [], []  # inputs of a batch that straddles two groups
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # progress in images (fractions while an image's inputs stream through the model)
        bar = tqdm(total=n, desc="insertion/deletion",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} (" + str(n) + " images)")

    def emit(scores, k):
        nonlocal written
        evaluated[written : written + k] = scores.numpy()[:k]
        written += k

    try:
        for g0 in range(0, n, group):
            g1 = min(n, g0 + group)
            tables, steps_g = _group_tables(x, sal, baseline, base_keys, tie_keys, g0, g1, steps)
            unique_ids, source = _shared_items(steps_g, steps, len(deletion_modes))
            expansions.append((g0 * items_per_image, written + sum(int(p.shape[0]) for p in pending_x), source))
            length = len(unique_ids)

            def items(start, stop):
                desc = _item_descriptors(unique_ids[start:stop], m, steps, deletion_modes)
                return desc, y[g0 + desc[0]]

            pos = 0
            if pending_x:
                have = sum(int(p.shape[0]) for p in pending_x)
                pos = min(b - have, length)
                desc, labels = items(0, pos)
                pending_x.append(scorer.build(*tables, *desc))
                pending_y.append(labels)
                if have + pos == b:
                    emit(scorer.score(tf.concat(pending_x, 0), tf.constant(np.concatenate(pending_y))), b)
                    pending_x, pending_y = [], []
            while pos + b <= length:  # the common path: build and score in one traced call
                desc, labels = items(pos, pos + b)
                emit(scorer.fused(*tables, *desc, tf.constant(labels)), b)
                pos += b
                if bar is not None:
                    bar.update((g1 - g0) * b / length)
            if pos < length:
                desc, labels = items(pos, length)
                pending_x.append(scorer.build(*tables, *desc))
                pending_y.append(labels)
        if pending_x:  # the call's last, partial batch: zero-pad, drop the padding's scores
            xb = tf.concat(pending_x, 0)
            k = int(xb.shape[0])
            labels = np.concatenate(pending_y + [np.zeros(b - k, np.int32)])
            emit(scorer.score(pad_to(xb, b), tf.constant(labels)), k)
        if bar is not None:
            bar.n = bar.total
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    expected = sum(int(source.max()) + 1 for _, _, source in expansions)
    if written != expected:  # pragma: no cover - guards the bookkeeping above
        raise RuntimeError(f"internal error: scored {written} of {expected} distinct perturbed inputs")
    out = np.empty(n * items_per_image, np.float32)
    for first_item, first_score, source in expansions:
        out[first_item : first_item + len(source)] = evaluated[first_score + source]
    return out, written


def insertion_auc(model, images, labels, saliency, steps: int = 1000, baseline="normal", seed: int = 0,
                  batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Insertion AUCs only (arguments as :func:`insertion_deletion`; half its forward passes).

    Equal to ``insertion_deletion(...).insertion`` for the same arguments (up to float rounding
    of differently packed forward batches).
    """
    return _run(model, images, labels, saliency, steps, baseline, seed, batch_size, False, progress,
                curves=("insertion",)).insertion


def deletion_auc(model, images, labels, saliency, steps: int = 1000, baseline="normal", seed: int = 0,
                 batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Deletion AUCs only (arguments as :func:`insertion_deletion`; half its forward passes)."""
    return _run(model, images, labels, saliency, steps, baseline, seed, batch_size, False, progress,
                curves=("deletion",)).deletion
