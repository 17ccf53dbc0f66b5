"""Poly-CAM (Englebert, Cornu & De Vleeschouwer 2022, arXiv:2204.13359)."""
from __future__ import annotations

import functools
import numbers

import numpy as np
import tensorflow as tf

from tfagg.batching import pad_to
from tfagg.explainers._gradients import TracedFunctionCache, chunk_size, class_score, spec_of
from tfagg.explainers.base import Explainer, activation_model
from tfagg.explainers.gradcam import check_conv_layer
from tfagg.validation import check_positive_float

VARIANTS = ("plus", "minus", "plus_minus")
_EPS = 1e-12  # the reference implementation's guard against division by zero


def normalize_maps(maps: np.ndarray, outlier_percentile: float) -> np.ndarray:
    """Min-max normalise ``(..., h, w)`` maps to [0, 1] with percentile-clipped extremes.

    ``lo``/``hi`` are the ``q``-th and ``(100 - q)``-th percentiles (linear interpolation) of each
    map, and the map is ``clip((A - lo) / (hi - lo), 0, 1)``. The reference ``normalize`` divides
    by ``hi`` instead of ``hi - lo``; the two agree whenever ``lo = 0`` (most post-ReLU channels)
    and ours reaches 1 as its docstring ("normalise in [0, 1] interval") intends otherwise.
    """
    flat = maps.reshape(*maps.shape[:-2], -1)
    lo, hi = np.percentile(flat, [outlier_percentile, 100.0 - outlier_percentile], axis=-1)
    lo, hi = lo[..., None, None], hi[..., None, None]
    return np.clip((maps - lo) / np.maximum(hi - lo, _EPS), 0.0, 1.0).astype(np.float32)


def bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix ``R`` of 1-D bilinear resizing with half-pixel centres.

    ``R @ v`` equals ``tf.image.resize`` (bilinear, no antialiasing) of a vector ``v``; a 2-D map
    is resized by ``R_h @ A @ R_w^T``.
    """
    src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    r = np.zeros((out_size, in_size), np.float32)
    np.add.at(r, (np.arange(out_size), lo), 1.0 - frac)
    np.add.at(r, (np.arange(out_size), hi), frac)
    return r


def _resize(maps: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps, half-pixel centres (= PyTorch align_corners=False).

    ``R_h @ A @ R_w^T`` with :func:`bilinear_matrix` -- the same values as ``tf.image.resize``
    (bilinear, no antialiasing) up- and downwards, without an eager TensorFlow call per resize
    (~0.7 ms each, a noticeable share of a one-image call on a small model).
    """
    maps = np.asarray(maps, np.float32)
    rows, cols = bilinear_matrix(size[0], maps.shape[-2]), bilinear_matrix(size[1], maps.shape[-1])
    return np.einsum("Hh,nhw,Ww->nHW", rows, maps, cols, optimize=True).astype(np.float32)


def default_polycam_layers(model) -> tuple:
    """PolyCAM's default targets: one layer per resolution, shallow to deep (see ``layers``)."""
    names = {layer.name for layer in model.layers}
    stages = ("stage1", "stage2", "stage3", "stage4")
    if not set(stages) <= names:
        raise ValueError("`layers` must be given for models other than tfagg.models.resnet18 "
                         "(names of convolutional layers, one per resolution, shallow to deep)")
    layers = stages
    if "stem_relu" in names and model.get_layer("stem_relu").output.shape[1] != model.get_layer("stage1").output.shape[1]:
        layers = ("stem_relu",) + stages
    return layers


class PolyCAM(TracedFunctionCache, Explainer):
    r"""Multi-layer class activation map, refined from the deepest to the shallowest layer.

    For each target layer ``l`` (activations ``A_l^k``, ``k = 1..K_l``) a Score-CAM-like map
    ``M_l = ReLU(sum_k w_l^k A_l^k)`` is formed, whose channel weights are the confidence of the
    class when the image is masked by the channel (Englebert et al. 2022's PCAM variants; the
    weights that Mahlau & Nolde's Appendix A call "channel-wise variation of confidence"):

    * ``"plus"`` (PCAM+, default): ``w^k = p_c(x * N(A^k))`` -- the class probability of the image
      masked by the channel's normalised, upsampled activation ``N(A^k)``;
    * ``"minus"`` (PCAM-): ``w^k = ReLU(p_c(x) - p_c(x * (1 - N(A^k))))`` -- the confidence lost when
      the channel's region is removed;
    * ``"plus_minus"`` (PCAM+/-): ``w^k = ReLU(p_c(x * N) + p_c(x) - p_c(x * (1 - N)))``.

    The maps are then combined from deep to shallow (Poly-CAM's recursion with local
    normalisation "LNorm"):

    .. math:: P_L = M_L, \qquad
              P_l = \mathrm{ReLU}\Big(\frac{M_l}{\mathrm{up}_l(\mathrm{down}_{l+1}(M_l))} \odot
              \mathrm{up}_l(P_{l+1})\Big),

    and the saliency map is ``P_1`` bilinearly upsampled to the input size. ``up``/``down`` are
    bilinear resizes (half-pixel centres, no antialiasing -- as ``F.interpolate(...,
    mode="bilinear")`` in the reference). This follows the authors' reference implementation
    (github.com/aenglebert/polycam, ``_PolyCAM.compute_cams``, ``PCAMp``/``PCAMm``/``PCAMpm``).

    Which variant Mahlau & Nolde used is not stated; "channel-wise variation of confidence" is
    closest to PCAM+, whose weights are Score-CAM's "channel-wise increase of confidence", so
    ``"plus"`` is the default (one forward pass per channel; ``"plus_minus"`` needs two).

    Parameters
    ----------
    model : keras.Model
        Any Keras classifier, RGB in [0, 1] -> logits.
    layers : sequence of str or None
        Target layers, ordered from shallow to deep (forward order). ``None`` (default): the last
        layer before each change of resolution, as the reference's automatic layer search picks them
        (its torchvision ResNet script: ``relu, layer1..layer4``). For :func:`tfagg.models.resnet18`
        that is ``stem_relu`` (H/2, ImageNet stem only) and ``stage1``..``stage4``.
    variant : {"plus", "minus", "plus_minus"}
        Channel weights, see above.
    local_normalization : bool
        Apply LNorm (reference default ``True``).
    outlier_percentile : float
        Percentile clipped at both ends when normalising activations to masks (reference: 0.1).
    fill : "auto", float or 3 floats
        Colour that masked-out pixels take: ``x_masked = fill + N(A) * (x - fill)``. The reference
        multiplies the *normalised* network input by the mask, i.e. masked pixels take the colour
        that normalises to 0. ``"auto"`` reproduces that: the ``mean`` of a
        ``keras.layers.Normalization`` layer applied directly to the model input if there is one
        (tfagg's ResNet18: the ImageNet mean), else 0 (black).
    normalize_output : bool
        Min-max normalise the final map as the reference does. Default ``False``: Mahlau & Nolde
        (Sec. 3.1) describe PolyCAM attributions as "a product of activations, which can take
        arbitrary (real) positive values", i.e. they used the raw map; normalisation is the
        aggregation's job in tfagg.
    batch_size, seed : see :class:`~tfagg.explainers.base.Explainer` (Poly-CAM is deterministic).
    score : {"probability", "logit"}
        Confidence used for the weights; default ``"probability"`` (softmax, as the reference).

    Notes
    -----
    Cost: one forward pass per image for the activations plus one per channel of every target
    layer (two for ``"plus_minus"``): 1 + 64 + 960 passes per image for a full-width ResNet18. The
    (image, layer, channel) triples of all target layers form one stream, cut into equal chunks of
    at most ``batch_size`` masked images that one traced function generates from the
    low-resolution activations, so the model always sees full batches.
    """

    name = "polycam"
    default_score = "probability"

    def __init__(
        self,
        model,
        layers=None,
        variant: str = "plus",
        local_normalization: bool = True,
        outlier_percentile: float = 0.1,
        fill="auto",
        normalize_output: bool = False,
        batch_size: int = 64,
        seed: int = 0,
        score: str | None = None,
    ):
        super().__init__(model, batch_size=batch_size, seed=seed, score=score)
        if layers is None:
            layers = default_polycam_layers(model)
        if isinstance(layers, str) or not hasattr(layers, "__iter__"):
            raise TypeError(f"`layers` must be a sequence of layer names (shallow to deep); got {layers!r}")
        self.layers = tuple(check_conv_layer(model, name, "layers") for name in layers)
        if not self.layers:
            raise ValueError("`layers` must name at least one layer")
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}; got {variant!r}")
        self.variant = variant
        self.local_normalization = bool(local_normalization)
        q = check_positive_float(outlier_percentile, "outlier_percentile", allow_zero=True)
        if q >= 50:
            raise ValueError(f"`outlier_percentile` must be in [0, 50); got {outlier_percentile}")
        self.outlier_percentile = q
        self.fill = fill
        self.fill_value()  # validates `fill`
        self.normalize_output = bool(normalize_output)
        self._activation_models = {}

    # -- configuration -------------------------------------------------------------------------
    def fill_value(self) -> np.ndarray:
        """The ``(3,)`` colour of masked-out pixels (see ``fill``)."""
        if isinstance(self.fill, str):
            if self.fill != "auto":
                raise ValueError(f"`fill` must be 'auto', a number or 3 numbers; got {self.fill!r}")
            import keras

            inputs = list(self.model.inputs or [])
            for layer in self.model.layers:
                try:
                    reads_input = any(layer.input is t for t in inputs)
                except (AttributeError, ValueError):  # layers without a single inbound node
                    reads_input = False
                if isinstance(layer, keras.layers.Normalization) and reads_input:
                    mean = getattr(layer, "input_mean", None)
                    if mean is None:
                        mean = layer.mean
                    if mean is not None and np.size(mean) in (1, 3):
                        return np.broadcast_to(np.asarray(mean, np.float32).reshape(-1), (3,)).copy()
            return np.zeros(3, np.float32)
        if isinstance(self.fill, numbers.Real):
            value = np.full(3, float(self.fill), np.float32)
        else:
            value = np.asarray(self.fill, np.float32).reshape(-1)
        if value.shape != (3,) or not np.all(np.isfinite(value)):
            raise ValueError(f"`fill` must be 'auto', a number or 3 numbers; got {self.fill!r}")
        return value

    def passes_per_image(self) -> int:
        """Forward passes per image: one for activations plus one (two) per target channel."""
        channels = sum(int(self.model.get_layer(n).output.shape[-1]) for n in self.layers)
        return 1 + channels * (2 if self.variant == "plus_minus" else 1)

    def _activation_model(self):
        if self.layers not in self._activation_models:
            self._activation_models[self.layers] = activation_model(self.model, list(self.layers))
        return self._activation_models[self.layers]

    # -- traced kernels ------------------------------------------------------------------------
    def _chunk_activations(self, images, labels):
        *activations, logits = self._activation_model()(images, training=False)
        return activations, class_score(logits, labels, self.score)

    def _chunk_masked_scores(self, differences, labels, masks, offsets, invert):
        """Class scores of images masked by the (image, layer, channel) triples ``offsets``.

        ``differences`` are ``images - fill`` (computed once per call) and ``masks`` holds one
        ``(N, K_l, h_l, w_l)`` tensor per target layer. The stream is image-major: image ``n``
        owns offsets ``n P .. n P + P - 1`` (``P = sum_l K_l``), ordered by layer, then channel.
        One chunk may therefore mix layers of different resolutions: its rows are partitioned by
        layer, each part is upsampled with its layer's matrices, and the parts are stitched back
        -- every chunk is full whatever the layer sizes (a per-layer stream would run the model on
        batches of 16 or 32 rows for the shallow layers of a narrow network).
        """
        sizes = [int(m.shape[1]) for m in masks]
        per_image = sum(sizes)
        chunk = int(offsets.shape[0])
        total = tf.shape(differences)[0] * per_image
        safe = tf.minimum(offsets, total - 1)  # padded rows repeat the last triple; dropped later
        image_index, within = safe // per_image, safe % per_image
        layer_id = tf.searchsorted(tf.constant(np.cumsum(sizes), tf.int32), within, side="right")
        positions = tf.dynamic_partition(tf.range(chunk), layer_id, len(masks))
        height, width = differences.shape[1:3]
        parts = []
        for layer, (start, layer_masks, rows_in_chunk) in enumerate(
                zip(np.cumsum([0] + sizes[:-1]), masks, positions)):
            pair = tf.stack([tf.gather(image_index, rows_in_chunk), tf.gather(within, rows_in_chunk) - int(start)], 1)
            low_res = tf.gather_nd(layer_masks, pair)  # (rows of this layer, h, w)
            # Bilinear upsampling as two small matrix products whose right factor also repeats the
            # mask over the 3 colour channels: this produces the (B, H, W * 3) mask directly, which
            # is ~2x cheaper on CPU than tf.image.resize followed by a broadcasting multiply.
            h, w = layer_masks.shape[2:]
            up_rows = tf.constant(bilinear_matrix(height, h))
            up_cols = tf.constant(np.repeat(bilinear_matrix(width, w).T, 3, axis=1))  # (w, W * 3)
            parts.append(tf.matmul(up_rows, tf.matmul(low_res, up_cols)))
        mask = tf.reshape(tf.dynamic_stitch(positions, parts), (chunk, height, width, 3))
        if invert:
            mask = 1.0 - mask
        first = image_index[0]
        masked = tf.cond(tf.reduce_all(tf.equal(image_index, first)),
                         lambda: mask * differences[first][None],  # one image: broadcast, no gathered copy
                         lambda: mask * tf.gather(differences, image_index))
        fill = self.fill_value()
        if np.any(fill != 0):  # a (1, H, W, 3) addend: broadcasting over channels is slow on CPU
            masked = masked + tf.constant(np.broadcast_to(fill, (1, height, width, 3)).copy())
        outputs = self.model(masked, training=False)
        return class_score(outputs, tf.gather(labels, image_index), self.score)

    # -- driver --------------------------------------------------------------------------------
    def _activations(self, images, labels):
        """Per-layer activations ``[(N, h, w, K)]`` and the class scores ``(N,)`` of the images."""
        n = int(images.shape[0])
        chunk = chunk_size(n, self.batch_size)
        step = self._traced("activations", self._chunk_activations, (spec_of(images, chunk), spec_of(labels, chunk)))
        per_layer, scores = [[] for _ in self.layers], []
        for start in range(0, n, chunk):
            x, y = images[start : start + chunk], labels[start : start + chunk]
            rows = int(x.shape[0])
            acts, s = step(pad_to(x, chunk), pad_to(y, chunk))
            for store, a in zip(per_layer, acts):
                store.append(a.numpy()[:rows])
            scores.append(s.numpy()[:rows])
        return [np.concatenate(a) for a in per_layer], np.concatenate(scores)

    def _masked_scores(self, images, labels, masks, invert: bool) -> list:
        """Class scores ``[(N, K_l)]`` of every image masked by each channel mask of every layer.

        ``masks`` is one ``(N, K_l, h_l, w_l)`` array per target layer; all (image, layer,
        channel) triples form one stream cut into equal chunks of at most ``batch_size``.
        """
        n = int(images.shape[0])
        sizes = [m.shape[1] for m in masks]
        total = n * sum(sizes)
        chunk = chunk_size(total, self.batch_size)
        masks = tuple(tf.constant(m) for m in masks)
        differences = images - tf.constant(self.fill_value().reshape(1, 1, 1, 3))
        signature = (spec_of(images), spec_of(labels), tuple(spec_of(m) for m in masks),
                     tf.TensorSpec((chunk,), tf.int32))
        kernel = functools.partial(self._chunk_masked_scores, invert=invert)
        step = self._traced(f"masked_scores/{invert}", kernel, signature)
        out = []
        for start in range(0, total, chunk):
            offsets = tf.range(start, start + chunk, dtype=tf.int32)
            out.append(step(differences, labels, masks, offsets).numpy())
        scores = np.concatenate(out)[:total].reshape(n, sum(sizes))
        return np.split(scores, np.cumsum(sizes)[:-1], axis=1)

    def channel_weights(self, images, labels, activations, base_scores) -> list:
        """``[(N, K_l)]`` channel weights of every target layer (see ``variant``).

        ``activations`` is one ``(N, h_l, w_l, K_l)`` array per layer of :attr:`layers`.
        """
        masks = [normalize_maps(np.transpose(a, (0, 3, 1, 2)), self.outlier_percentile) for a in activations]
        if self.variant == "plus":
            return self._masked_scores(images, labels, masks, False)
        removed = self._masked_scores(images, labels, masks, True)
        drops = [base_scores[:, None] - r for r in removed]
        if self.variant == "minus":
            return [np.maximum(d, 0.0) for d in drops]
        kept = self._masked_scores(images, labels, masks, False)
        return [np.maximum(k + d, 0.0) for k, d in zip(kept, drops)]

    def _explain(self, images, labels, keys):
        activations, base_scores = self._activations(images, labels)
        all_weights = self.channel_weights(images, labels, activations, base_scores)
        cam = None
        for acts, weights in reversed(list(zip(activations, all_weights))):  # deepest first
            layer_map = np.maximum(np.einsum("nhwk,nk->nhw", acts, weights), 0.0)
            if cam is None:
                cam = layer_map
                continue
            size = layer_map.shape[1:]
            if self.local_normalization:  # LNorm: relative to the mean over the coarser cell
                local = _resize(_resize(layer_map, cam.shape[1:]), size)
                layer_map = layer_map / np.maximum(local, _EPS)
            cam = np.maximum(layer_map * _resize(cam, size), 0.0)
        if self.normalize_output:
            cam = normalize_maps(cam, self.outlier_percentile)
        return _resize(cam, tuple(images.shape[1:3]))
