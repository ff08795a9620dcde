"""Winograd convolution F(2x2, 3x3) and F(2x2, 5x5) for the CPU path of stride-1 convolutions.

Lavin & Gray (CVPR 2016): with the output cut into m x m tiles (m = 2), the t x t input tile d
of each (t = m + r - 1, overlapping by r - 1), the r x r kernel g of each channel pair and
    V = BT d BT^T,   U = G g G^T   (t x t each),   y = AT (U * V) AT^T   (m x m),
the sum over input channels of the element-wise products U * V is, for each of the t * t
positions ab of the transformed tile, one matrix product
    M[ab] (tiles, Cout) = V[ab] (tiles, Cin) @ U[ab] (Cin, Cout).
So t^2 GEMMs over m^2 times fewer rows replace the r^2 per-tap GEMMs of ``nnet.fast_conv``:
2.25x (3x3: 16 instead of 36 per 2x2 tile) and 2.8x (5x5: 36 instead of 100) fewer multiply-adds.
The transforms are short sums done with NumPy over whole bands of tiles; they cost about
(Cin + Cout) per pixel against the products' Cin * Cout, so Winograd pays for layers with many
channels (``nnet.fast_conv`` decides where).

The gradients use the same transforms:
  * dL/dx is the same kind of convolution of gy with the flipped, transposed kernel;
  * dL/dW: dU[ab] (Cout, Cin) = sum over tiles of Z[ab]^T @ V[ab] with Z = AT^T gy_tile AT the
    transposed output transform of gy, then dW = G^T dU G.
Kernel transforms are one small GEMM each: (t^2, r^2) @ (r^2, Cout * Cin).

Arrays are NumPy float32/float64, images NCHW (any memory layout in, channels-last memory out,
as in ``nnet.fast_conv``). Padding 0 .. r - 1. Results equal the direct convolution to rounding:
in float32 about 1e-6 (3x3) and 2-5e-6 (5x5) of the largest value (tests/test_winograd.py).
"""
import numpy as np

from nnet import fast_conv

BAND_BYTES = 2 << 20  # target bytes of one band's transformed input and products
MIN_TILES = 256  # ... but at least this many tiles per band (the rows of its products)
WHOLE_BYTES = 32 << 20  # transformed input and products up to this size: all tiles at once


class Transform:
    """The matrices of F(m x m, r x r): AT (m, t), G (t, r), BT (t, t), GG = kron(G, G)."""

    def __init__(self, AT, G, BT):
        self.AT, self.G, self.BT = (np.array(a, np.float64) for a in (AT, G, BT))
        self.m, self.t = self.AT.shape
        self.r = self.G.shape[1]
        self.GG = np.kron(self.G, self.G)  # (t^2, r^2): U.ravel() = GG @ g.ravel()


# Interpolation points 0, 1, -1 (and infinity); the factors 1/2 sit in G so that BT is +-1.
F2_3 = Transform(AT=[[1, 1, 1, 0],
                     [0, 1, -1, -1]],
                 G=[[1, 0, 0],
                    [.5, .5, .5],
                    [.5, -.5, .5],
                    [0, 0, 1]],
                 BT=[[1, 0, -1, 0],
                     [0, 1, 1, 0],
                     [0, -1, 1, 0],
                     [0, 1, 0, -1]])
# Points 0, 1, -1, 2, -1/2 (and infinity): of the point sets tried, the most accurate in float32
# (about 3x smaller errors than 0, +-1, +-2). BT is scaled to integers, the factors sit in G.
_V5 = np.array([[1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, -1, 1, -1, 1], [1, 2, 4, 8, 16],
                [1, -1 / 2, 1 / 4, -1 / 8, 1 / 16], [0, 0, 0, 0, 1]])
F2_5 = Transform(AT=[[1, 1, 1, 1, 1, 0],
                     [0, 1, -1, 2, -1 / 2, 1]],
                 G=_V5 / np.array([2, 6, 6, 30, 15 / 16, 2])[:, None],
                 BT=[[2, 3, -4, -3, 2, 0],
                     [0, 2, 5, 1, -2, 0],
                     [0, 2, 1, -5, 2, 0],
                     [0, -1, -2, 1, 2, 0],
                     [0, -2, 1, 2, -1, 0],
                     [0, 2, 3, -4, -3, 2]])
TRANSFORMS = {3: F2_3, 5: F2_5}  # by kernel side


def _combine(out, coefs, term, tmp):
    """out[...] = sum_k coefs[k] * term(k), zeros skipped; +-1 terms are single additions,
    others go through ``tmp`` (a scratch of out's shape)."""
    terms = [(float(a), k) for k, a in enumerate(coefs) if a != 0]
    if not terms:
        out[...] = 0
        return
    unit = [(a, k) for a, k in terms if abs(a) == 1]
    other = [(a, k) for a, k in terms if abs(a) != 1]
    if len(unit) >= 2:  # the first two in one pass
        (a0, k0), (a1, k1) = unit[:2]
        unit = unit[2:]
        if a0 == 1:
            (np.add if a1 == 1 else np.subtract)(term(k0), term(k1), out=out)
        elif a1 == 1:
            np.subtract(term(k1), term(k0), out=out)
        else:
            np.add(term(k0), term(k1), out=out)
            np.negative(out, out=out)
    elif unit:
        a0, k0 = unit.pop()
        np.copyto(out, term(k0)) if a0 == 1 else np.negative(term(k0), out=out)
    else:
        a0, k0 = other.pop(0)
        np.multiply(term(k0), a0, out=out)
    for a, k in unit:
        (np.add if a == 1 else np.subtract)(out, term(k), out=out)
    for a, k in other:
        np.multiply(term(k), a, out=tmp)
        np.add(out, tmp, out=out)


def _scratch_view(flat, shape):
    return flat[:int(np.prod(shape))].reshape(shape)


def _columns_parallel(a, b, c):
    """c = a @ b, 2-D, its columns shared out to the threads of ``fast_conv.run_parallel`` (whose
    products are single-threaded: OpenBLAS' own threads would spin against ours)."""
    threads = fast_conv.THREADS or fast_conv.blas_threads()
    step = -(-c.shape[1] // (4 * threads))
    starts = range(0, c.shape[1], step)
    fast_conv.run_parallel(len(starts), lambda worker, j: fast_conv.gemm(
        a, b[:, starts[j]:starts[j] + step], c[:, starts[j]:starts[j] + step]))


def kernel_transform(W, flip=False):
    """W (Cout, Cin, r, r) -> U (t^2, Cout, Cin) contiguous, U[ab] = (G g G^T)[ab] per channel
    pair. With ``flip`` the kernel is rotated by 180 degrees first (the kernel of dL/dx)."""
    co, c, r = W.shape[:3]
    f = TRANSFORMS[r]
    gg = np.ascontiguousarray((f.GG[:, ::-1] if flip else f.GG).astype(W.dtype))
    U = np.empty((f.t * f.t, co, c), W.dtype)
    _columns_parallel(gg, np.ascontiguousarray(W).reshape(co * c, r * r).T,
                      U.reshape(f.t * f.t, co * c))
    return U


def kernel_gradient(dU, r):
    """dU (t^2, Cout, Cin) (gradient w.r.t. U) -> dW (Cout, Cin, r, r) = G^T dU G per pair."""
    f = TRANSFORMS[r]
    _, co, c = dU.shape
    dW = np.empty((co, c, r, r), dU.dtype)
    _columns_parallel(np.ascontiguousarray(f.GG.T.astype(dU.dtype)),
                      dU.reshape(f.t * f.t, co * c), dW.reshape(co * c, r * r).T)
    return dW


def _bands(n, th, tw, row_bytes):
    """[(image, first tile row, tile rows)]: about BAND_BYTES each but at least MIN_TILES tiles
    (the products' rows), and at least one band per thread when there are enough tile rows."""
    per = max(BAND_BYTES // max(1, row_bytes), -(-MIN_TILES // tw))
    threads = fast_conv.THREADS or fast_conv.blas_threads()
    per = max(1, min(per, -(-th // threads)))
    if n * -(-th // per) % threads:  # a multiple of the threads when that costs little
        per_image = -(-th // per)
        per_image += threads - (n * per_image) % threads
        per = max(1, -(-th // per_image))
    return [(i, t0, min(per, th - t0)) for i in range(n) for t0 in range(0, th, per)], per


class _Geometry:
    """Tiles of a convolution with output (Ho, Wo) and kernel side r, the bands of tile rows that
    the threads take, and the per-thread transforms of one band."""

    def __init__(self, f, n, c, co, ho, wo, pad, itemsize):
        self.f, self.c, self.co, self.pad = f, c, co, pad
        self.ho, self.wo = ho, wo
        self.th, self.tw = -(-ho // f.m), -(-wo // f.m)
        self.wpad = f.m * self.tw + f.r - 1  # padded input columns the tiles read
        self.bands, self.per = _bands(n, self.th, self.tw,
                                      itemsize * f.t * f.t * self.tw * (c + co))
        # small images: every transformed tile at once (each GEMM over all tiles, the threads
        # sharing out the t^2 GEMMs); large ones: fused band by band
        self.whole = itemsize * f.t * f.t * n * self.th * self.tw * (c + co) <= WHOLE_BYTES

    def tile_slice(self, i, t0, nt):
        """The tiles of image i, tile rows t0 .. t0 + nt, in an all-tiles array."""
        start = (i * self.th + t0) * self.tw
        return slice(start, start + nt * self.tw)

    def buffers(self, dtype):
        """(buf, rows, tmp, S) for one thread: the padded band (zeros: its pad columns are never
        written), the row-transformed band, a scratch for the transforms and the row-transformed
        products."""
        f, per, tw, c, co = self.f, self.per, self.tw, self.c, self.co
        big = max(per * self.wpad * c, per * f.m * tw * co, per * tw * max(c, co))
        return (np.zeros(((f.m * per + f.r - 1) * self.wpad, c), dtype),
                np.empty((f.t, per, max(self.wpad * c, f.m * tw * co)), dtype),
                np.empty(big, dtype), np.empty((f.m, f.t, per * tw, co), dtype))

    def input_transform(self, x_img, t0, nt, buffers, V):
        """V (t^2, nt * tw, C) = BT d BT^T of the input tiles of tile rows t0 .. t0 + nt."""
        f, tw, c = self.f, self.tw, self.c
        buf, rows_t, tmp, _ = buffers
        rows = f.m * nt + f.r - 1
        fast_conv._fill_band(buf, x_img, f.m * t0 - self.pad[0], rows, self.wpad, self.pad[1])
        P = buf[:rows * self.wpad].reshape(rows, self.wpad, c)
        R = rows_t[:, :nt, :self.wpad * c].reshape(f.t, nt, self.wpad, c)
        tmp_rows = _scratch_view(tmp, (nt, self.wpad, c))
        for a in range(f.t):  # along rows: R[a] (nt, wpad, C)
            _combine(R[a], f.BT[a], lambda k: P[k:k + f.m * nt:f.m], tmp_rows)
        tmp_tiles = _scratch_view(tmp, (nt, tw, c))
        for a in range(f.t):  # along columns
            for b in range(f.t):
                _combine(V[a * f.t + b].reshape(nt, tw, c), f.BT[b],
                         lambda k: R[a][:, k:k + f.m * tw:f.m], tmp_tiles)

    def output_transform(self, M, nt, buffers, o, bias):
        """Output tiles o (m * nt, m * tw, Cout) = AT M AT^T (+ bias), M (t^2, nt * tw, Cout)."""
        f, tw, co = self.f, self.tw, self.co
        _, _, tmp, S = buffers
        m, t, n_tiles = f.m, f.t, nt * tw
        tmp_flat = _scratch_view(tmp, (n_tiles, co))
        for p in range(m):  # along rows: S[p, b] (tiles, Cout)
            for bb in range(t):
                _combine(S[p, bb, :n_tiles], f.AT[p], lambda a: M[a * t + bb], tmp_flat)
        tmp_tiles = _scratch_view(tmp, (nt, tw, co))
        for p in range(m):  # ... and along columns, into the output tiles
            for q in range(m):
                view = o[p::m, q::m]
                _combine(view, f.AT[q], lambda bb: S[p, bb, :n_tiles].reshape(nt, tw, co),
                         tmp_tiles)
                if bias is not None:
                    view += bias

    def gy_transform(self, gy_img, t0, nt, buffers, gband, Z):
        """Z (t^2, nt * tw, Cout) = AT^T gy_tile AT of the gy tiles of tile rows t0 .. t0 + nt
        (the transposed output transform); ``gband`` (m * per, m * tw, Cout) a zeroed scratch."""
        f, tw, co = self.f, self.tw, self.co
        _, rows_t, tmp, _ = buffers
        m, t = f.m, f.t
        r0, r1 = m * t0, min(m * (t0 + nt), self.ho)
        gband[:r1 - r0, :self.wo] = gy_img[:, r0:r1].transpose(1, 2, 0)
        gband[r1 - r0:] = 0  # rows past the image; the columns past Wo stay zero
        R = rows_t[:, :nt, :m * tw * co].reshape(t, nt, m * tw, co)
        tmp_rows = _scratch_view(tmp, (nt, m * tw, co))
        for a in range(t):  # along rows: (nt, m * tw, Cout)
            _combine(R[a], f.AT[:, a], lambda p: gband[p:m * nt:m], tmp_rows)
        tmp_tiles = _scratch_view(tmp, (nt, tw, co))
        for a in range(t):  # ... and along columns
            for bb in range(t):
                _combine(Z[a * t + bb].reshape(nt, tw, co), f.AT[:, bb],
                         lambda q: R[a][:, q::m], tmp_tiles)


def _per_thread(make):
    """A dict-like getter: one ``make()`` per worker thread, made on first use."""
    made = {}

    def get(worker):
        if worker not in made:
            made[worker] = make()
        return made[worker]
    get.made = made
    return get


def conv(x, U, b, pad, r):
    """r x r stride-1 convolution of x (N, C, H, W) with transformed kernel U (t^2, C, Cout)
    (views fine), bias b (Cout,) or None, padding 0 .. r - 1. Returns (N, Cout, Ho, Wo), a view
    of channels-last memory."""
    f = TRANSFORMS[r]
    n, c, h, w = x.shape
    co = U.shape[2]
    ho, wo = h + 2 * pad[0] - r + 1, w + 2 * pad[1] - r + 1
    geo = _Geometry(f, n, c, co, ho, wo, pad, x.itemsize)
    m, t, tw = f.m, f.t, geo.tw
    out = np.empty((n, m * geo.th, m * tw, co), x.dtype)
    buffers = _per_thread(lambda: geo.buffers(x.dtype))
    run = fast_conv.run_parallel
    if geo.whole:
        V = np.empty((t * t, n * geo.th * tw, c), x.dtype)
        M = np.empty((t * t, n * geo.th * tw, co), x.dtype)

        def inputs(worker, j):
            i, t0, nt = geo.bands[j]
            geo.input_transform(x[i], t0, nt, buffers(worker), V[:, geo.tile_slice(i, t0, nt)])

        def outputs(worker, j):
            i, t0, nt = geo.bands[j]
            geo.output_transform(M[:, geo.tile_slice(i, t0, nt)], nt, buffers(worker),
                                 out[i, m * t0:m * (t0 + nt)], b)

        run(len(geo.bands), inputs)
        run(t * t, lambda worker, ab: fast_conv.gemm(V[ab], U[ab], M[ab]))
        run(len(geo.bands), outputs)
    else:
        products = _per_thread(lambda: (np.empty((t * t, geo.per * tw, c), x.dtype),
                                        np.empty((t * t, geo.per * tw, co), x.dtype)))

        def band(worker, j):
            i, t0, nt = geo.bands[j]
            V, M = (a[:, :nt * tw] for a in products(worker))
            geo.input_transform(x[i], t0, nt, buffers(worker), V)
            for ab in range(t * t):
                fast_conv.gemm(V[ab], U[ab], M[ab])
            geo.output_transform(M, nt, buffers(worker), out[i, m * t0:m * (t0 + nt)], b)

        run(len(geo.bands), band)
    return out[:, :ho, :wo].transpose(0, 3, 1, 2)


def grad_kernel_transformed(x, gy, pad, r):
    """dL/dU (t^2, Cout, Cin) of the r x r stride-1 convolution of x (N, C, H, W) giving gy
    (N, Cout, Ho, Wo), padding 0 .. r - 1: the sum over tiles of Z[ab]^T @ V[ab]."""
    f = TRANSFORMS[r]
    n, c = x.shape[:2]
    co, ho, wo = gy.shape[1:]
    geo = _Geometry(f, n, c, co, ho, wo, pad, x.itemsize)
    m, t, tw, per = f.m, f.t, geo.tw, geo.per
    buffers = _per_thread(lambda: geo.buffers(x.dtype))
    gbands = _per_thread(lambda: np.zeros((m * per, m * tw, co), x.dtype))
    run = fast_conv.run_parallel
    if geo.whole:  # all tiles transformed, then one product per ab: no per-thread sums
        V = np.empty((t * t, n * geo.th * tw, c), x.dtype)
        Z = np.empty((t * t, n * geo.th * tw, co), x.dtype)
        dU = np.empty((t * t, co, c), x.dtype)

        def transforms(worker, j):
            i, t0, nt = geo.bands[j]
            tiles = geo.tile_slice(i, t0, nt)
            geo.input_transform(x[i], t0, nt, buffers(worker), V[:, tiles])
            geo.gy_transform(gy[i], t0, nt, buffers(worker), gbands(worker), Z[:, tiles])

        run(len(geo.bands), transforms)
        run(t * t, lambda worker, ab: fast_conv.gemm(Z[ab].T, V[ab], dU[ab]))
        return dU
    sums = _per_thread(lambda: [np.empty((t * t, co, c), x.dtype), False])
    products = _per_thread(lambda: (np.empty((t * t, per * tw, c), x.dtype),
                                    np.empty((t * t, per * tw, co), x.dtype)))

    def band(worker, j):
        i, t0, nt = geo.bands[j]
        V, Z = (a[:, :nt * tw] for a in products(worker))
        geo.input_transform(x[i], t0, nt, buffers(worker), V)
        geo.gy_transform(gy[i], t0, nt, buffers(worker), gbands(worker), Z)
        total = sums(worker)  # (the thread's first band sets its sum, the next ones add)
        for ab in range(t * t):
            fast_conv.gemm(Z[ab].T, V[ab], total[0][ab], accumulate=total[1])
        total[1] = True

    run(len(geo.bands), band)
    parts = [s[0] for s in sums.made.values()]
    for part in parts[1:]:
        parts[0] += part
    return parts[0]


def conv_forward(x, W, b, pad):
    """y = conv(x, W) + b, W (Cout, Cin, r, r), r = 3 or 5."""
    return conv(x, kernel_transform(W).transpose(0, 2, 1), b, pad, W.shape[2])


def conv_grad_x(gy, W, pad):
    """dL/dx: gy convolved with the flipped, transposed kernel, padding r - 1 - pad."""
    r = W.shape[2]
    return conv(gy, kernel_transform(W, flip=True), None, (r - 1 - pad[0], r - 1 - pad[1]), r)


def conv_grad_w(x, gy, pad):
    """dL/dW (Cout, Cin, r, r); r from the sizes of x, gy and pad."""
    r = x.shape[2] + 2 * pad[0] - gy.shape[2] + 1
    return kernel_gradient(grad_kernel_transformed(x, gy, pad, r), r)
