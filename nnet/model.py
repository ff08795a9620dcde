"""The Deep Image Matting network (Xu et al., CVPR 2017): encoder-decoder plus refinement.

Input convention (the one place it is defined): the network takes
    image  (N, 3, H, W) float32, RGB in [0, 1]
    trimap (N, 1, H, W) float32 in [0, 1]  (0 = background, 128/255 = unknown, 1 = foreground)
and feeds it as 4 channels: ``image - VGG_MEAN`` (the VGG16 ImageNet mean, in [0, 1] units) and
``trimap - 0.5``. VGG16's Caffe weights expect BGR in 0..255 minus the mean, so when they are
loaded conv1_1's filters are reordered BGR -> RGB and multiplied by 255: the layer then computes
exactly what VGG16 computes on the same picture (see ``EncoderDecoder.load_vgg16``).

Outputs are alpha mattes (N, 1, H, W) float32 in [0, 1]. Any H, W: sides that are not multiples
of 32 are padded by reflection and the output cropped back.
"""
import chainer
import chainer.functions as F
import numpy as np
from chainer import initializers

from nnet.cpu import Conv2DActiv, Convolution2D, max_pooling_2d, upsampling_2d

VGG_MEAN = np.array([123.68, 116.779, 103.939], np.float32) / 255.0  # RGB, ImageNet
DOWNSAMPLING = 32  # five 2x2 max-poolings
UNKNOWN_VALUE = 128.0 / 255.0  # trimap unknown, in [0, 1] units
VGG_INPUT_SCALE = 255.0  # the encoder's input scale with VGG16 weights: Caffe's 0..255

# (name, output channels at width 1.0) for VGG16's 13 conv layers, grouped by pooling stage.
ENCODER_STAGES = (
    (('conv1_1', 64), ('conv1_2', 64)),
    (('conv2_1', 128), ('conv2_2', 128)),
    (('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256)),
    (('conv4_1', 512), ('conv4_2', 512), ('conv4_3', 512)),
    (('conv5_1', 512), ('conv5_2', 512), ('conv5_3', 512)),
)
CONV6 = ('conv6', 512, 3)  # fc6 as a 3x3 conv with 512 channels (see load_vgg16)
# (name, output channels at width 1.0, kernel size); an unpooling precedes each layer but deconv6.
DECODER = (('deconv6', 512, 1), ('deconv5', 512, 5), ('deconv4', 256, 5),
           ('deconv3', 128, 5), ('deconv2', 64, 5), ('deconv1', 64, 5))
REFINEMENT_CHANNELS = 64


def scaled(channels, width):
    """Channel count at a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def pad_to_multiple(x, multiple=DOWNSAMPLING):
    """Pad an (N, C, H, W) array at the bottom/right by reflection to multiples of ``multiple``.

    Returns the padded array (same array type) and the original (H, W).
    """
    xp = chainer.backend.get_array_module(x)
    h, w = x.shape[2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = 'reflect' if ph < h and pw < w else 'symmetric' if ph <= h and pw <= w else 'edge'
    return xp.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode), (h, w)


def network_input(image, trimap):
    """(N,3,H,W) image in [0,1] and (N,1,H,W) trimap in [0,1] -> (N,4,H,W) network input."""
    xp = chainer.backend.get_array_module(image)
    mean = xp.asarray(VGG_MEAN).reshape(1, 3, 1, 1)
    return xp.concatenate([image - mean, trimap - 0.5], axis=1).astype(np.float32)


class EncoderDecoder(chainer.Chain):
    """Stage 1: VGG16 encoder (13 conv + conv6, 5 max-poolings with indices) and the decoder.

    Args:
        width: channel multiplier; 1.0 is the paper's network.
        input_scale: the network input is multiplied by this before conv1_1 (255: Caffe's
            0..255 scale of VGG16's weights; 1: a network trained from scratch).
    forward: (N, 4, H, W) network input, H and W multiples of 32 -> (N, 1, H, W) alpha in [0, 1].
    """

    def __init__(self, width=1.0, input_scale=1.0):
        super().__init__()
        self.input_scale = float(input_scale)
        encoder_init = initializers.HeNormal()  # used unless VGG16 weights are loaded
        decoder_init = initializers.GlorotUniform()  # Xavier, as in the paper
        with self.init_scope():
            in_ch = 4
            for stage in ENCODER_STAGES:
                for name, ch in stage:
                    setattr(self, name, Conv2DActiv(in_ch, scaled(ch, width), 3, pad=1,
                                                    initialW=encoder_init))
                    in_ch = scaled(ch, width)
            name, ch, k = CONV6
            setattr(self, name, Conv2DActiv(in_ch, scaled(ch, width), k, pad=k // 2,
                                            initialW=encoder_init))
            in_ch = scaled(ch, width)
            for name, ch, k in DECODER:
                setattr(self, name, Conv2DActiv(in_ch, scaled(ch, width), k, pad=k // 2,
                                                initialW=decoder_init))
                in_ch = scaled(ch, width)
            self.pred = Convolution2D(in_ch, 1, 5, pad=2, initialW=decoder_init)

    def forward(self, x):
        h = x * self.input_scale if self.input_scale != 1.0 else x
        pooled = []  # (indices, size before pooling) per stage, for unpooling
        for stage in ENCODER_STAGES:
            for name, _ in stage:
                h = self[name](h)
            size = h.shape[2:]
            h, indices = max_pooling_2d(h, 2, stride=2, return_indices=True)
            pooled.append((indices, size))
        h = self.conv6(h)
        h = self.deconv6(h)
        for (name, _, _), (indices, size) in zip(DECODER[1:], reversed(pooled)):
            h = upsampling_2d(h, indices, ksize=2, stride=2, outsize=size)
            h = self[name](h)
        return F.sigmoid(self.pred(h))

    def load_vgg16(self, params):
        """Copy ImageNet VGG16 weights into the encoder (width 1.0 only).

        Args:
            params: dict mapping 'conv1_1'..'conv5_3' and optionally 'fc6' to (W, b) numpy
                arrays in Caffe/Chainer layout (conv W: (out, in, 3, 3), BGR input for conv1_1,
                0..255 scale; fc6 W: (4096, 25088)).
        Effects:
            13 conv layers copied; conv1_1's BGR filters go to the RGB channels (reordered,
            times 255 / input_scale for our [0, 1] input units) and its trimap channel gets
            zeros. conv6 (3x3, 512) takes fc6's first 512 output units and the central 3x3
            taps of its 7x7 kernel; fc6 is skipped when absent or of another shape.
        Returns:
            list of the layer names that were copied.
        """
        copied = []
        for stage in ENCODER_STAGES:
            for name, _ in stage:
                W, b = (np.asarray(a, np.float32) for a in params[name])
                link = self[name]
                if name == 'conv1_1':
                    rgb = W[:, ::-1] * (255.0 / self.input_scale)
                    W = np.concatenate([rgb, np.zeros_like(W[:, :1])], axis=1)
                if W.shape != link.W.shape or b.shape != link.b.shape:
                    raise ValueError(f'VGG16 {name}: weight shape {W.shape} does not fit '
                                     f'{link.W.shape} (VGG16 weights need width 1.0)')
                link.W.array[...] = link.xp.asarray(W)
                link.b.array[...] = link.xp.asarray(b)
                copied.append(name)
        if 'fc6' in params:
            W, b = (np.asarray(a, np.float32) for a in params['fc6'])
            out_ch, in_ch, k, _ = self.conv6.W.shape
            if W.ndim == 2 and W.shape[0] >= out_ch and W.shape[1] == in_ch * 49:
                start = (7 - k) // 2
                W = W.reshape(-1, in_ch, 7, 7)[:out_ch, :, start:start + k, start:start + k]
                self.conv6.W.array[...] = self.xp.asarray(W)
                self.conv6.b.array[...] = self.xp.asarray(b[:out_ch])
                copied.append('conv6')
        return copied


class RefinementNet(chainer.Chain):
    """Stage 2: four 3x3 convolutions, no downsampling, with a skip from the stage-1 alpha.

    forward: image part of the network input (N, 3, H, W) and stage-1 alpha (N, 1, H, W) in [0, 1]
    -> refined alpha (N, 1, H, W), the stage-1 alpha plus a residual, clipped to [0, 1].
    """

    def __init__(self, width=1.0):
        super().__init__()
        ch = scaled(REFINEMENT_CHANNELS, width)
        init = initializers.GlorotUniform()
        with self.init_scope():
            self.refine1 = Conv2DActiv(4, ch, 3, pad=1, initialW=init)
            self.refine2 = Conv2DActiv(ch, ch, 3, pad=1, initialW=init)
            self.refine3 = Conv2DActiv(ch, ch, 3, pad=1, initialW=init)
            self.refine_pred = Convolution2D(ch, 1, 3, pad=1, initialW=init)

    def forward(self, image_input, alpha):
        h = F.concat([image_input, alpha], axis=1)
        h = self.refine1(h)
        h = self.refine2(h)
        h = self.refine3(h)
        return F.clip(alpha + self.refine_pred(h), 0.0, 1.0)


class DIM(chainer.Chain):
    """The two-stage Deep Image Matting model.

    Args:
        width: channel multiplier (1.0 = the paper).
        input_scale: the encoder's input scale (``EncoderDecoder``; 255 for VGG16 weights).
            Both are recorded in ``config`` so that a checkpoint rebuilds the same network
            (checkpoints from before ``input_scale`` existed have 1).
    """

    def __init__(self, width=1.0, input_scale=1.0):
        super().__init__()
        self.config = {'width': float(width), 'input_scale': float(input_scale)}
        with self.init_scope():
            self.encoder_decoder = EncoderDecoder(width, input_scale)
            self.refinement = RefinementNet(width)

    def forward(self, image, trimap, refine=True, freeze_stage1=False):
        """image (N,3,H,W) in [0,1], trimap (N,1,H,W) in [0,1], any H, W.

        Args:
            refine: also run the refinement stage.
            freeze_stage1: run the encoder-decoder without recording its graph (stage-2 training).
        Returns:
            (stage-1 alpha, refined alpha or None), each a Variable (N, 1, H, W) in [0, 1].
        """
        x, (h, w) = pad_to_multiple(network_input(image, trimap))
        if freeze_stage1:
            with chainer.no_backprop_mode():
                alpha1 = chainer.Variable(self.encoder_decoder(x).array)
        else:
            alpha1 = self.encoder_decoder(x)
        alpha2 = self.refinement(x[:, :3], alpha1) if refine else None
        crop = (lambda a: a[:, :, :h, :w]) if x.shape[2:] != (h, w) else (lambda a: a)
        return crop(alpha1), (crop(alpha2) if refine else None)

    def predict(self, image, trimap, refine=True):
        """Alpha matte of one picture at full resolution.

        Args:
            image: (H, W, 3) float32 RGB in [0, 1] (NumPy).
            trimap: (H, W) uint8 in {0, 128, 255}.
            refine: use the refinement stage (else the encoder-decoder's alpha).
        Returns:
            (H, W) float32 NumPy alpha in [0, 1]; trimap-known pixels keep 0 / 1.
        """
        xp = self.xp
        img = xp.asarray(image.transpose(2, 0, 1)[None], np.float32)
        tri = xp.asarray(trimap[None, None], np.float32) / 255.0
        with chainer.using_config('train', False), chainer.no_backprop_mode():
            alpha1, alpha2 = self.forward(img, tri, refine=refine)
        alpha = chainer.backend.CpuDevice().send((alpha2 if refine else alpha1).array)[0, 0]
        alpha = alpha.copy()
        alpha[trimap == 0] = 0.0
        alpha[trimap == 255] = 1.0
        return alpha
