"""Warp kernels: per-Gaussian projection to the screen (EWA covariance, extent, tile box, SH colour) and its
hand-written backward. One thread per Gaussian; semantics documented in scenes/rasterize.py."""
from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

TILE = 16
EPS2D = 0.3

vec16 = wp.types.vector(length=16, dtype=wp.float32)

SH_C0 = wp.constant(0.28209479177387814)
SH_C1 = wp.constant(0.4886025119029199)
C20 = wp.constant(1.0925484305920792)
C21 = wp.constant(-1.0925484305920792)
C22 = wp.constant(0.31539156525252005)
C23 = wp.constant(-1.0925484305920792)
C24 = wp.constant(0.5462742152960396)
C30 = wp.constant(-0.5900435899266435)
C31 = wp.constant(2.890611442640554)
C32 = wp.constant(-0.4570457994644658)
C33 = wp.constant(0.3731763325901154)
C34 = wp.constant(-0.4570457994644658)
C35 = wp.constant(1.445305721320277)
C36 = wp.constant(-0.5900435899266435)


@wp.func
def sh_basis(d: wp.vec3):
    """The 16 real SH basis values at unit direction d (3DGS sign conventions)."""
    x = d[0]
    y = d[1]
    z = d[2]
    xx = x * x
    yy = y * y
    zz = z * z
    return vec16(
        SH_C0, -SH_C1 * y, SH_C1 * z, -SH_C1 * x,
        C20 * x * y, C21 * y * z, C22 * (2.0 * zz - xx - yy), C23 * x * z, C24 * (xx - yy),
        C30 * y * (3.0 * xx - yy), C31 * x * y * z, C32 * y * (4.0 * zz - xx - yy),
        C33 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), C34 * x * (4.0 * zz - xx - yy), C35 * z * (xx - yy),
        C36 * x * (xx - 3.0 * yy))


@wp.func
def sh_basis_grad_x(d: wp.vec3):
    x = d[0]
    y = d[1]
    z = d[2]
    return vec16(
        0.0, 0.0, 0.0, -SH_C1,
        C20 * y, 0.0, -2.0 * C22 * x, C23 * z, 2.0 * C24 * x,
        6.0 * C30 * x * y, C31 * y * z, -2.0 * C32 * x * y, -6.0 * C33 * x * z,
        C34 * (4.0 * z * z - 3.0 * x * x - y * y), 2.0 * C35 * x * z, C36 * (3.0 * x * x - 3.0 * y * y))


@wp.func
def sh_basis_grad_y(d: wp.vec3):
    x = d[0]
    y = d[1]
    z = d[2]
    return vec16(
        0.0, -SH_C1, 0.0, 0.0,
        C20 * x, C21 * z, -2.0 * C22 * y, 0.0, -2.0 * C24 * y,
        C30 * (3.0 * x * x - 3.0 * y * y), C31 * x * z, C32 * (4.0 * z * z - x * x - 3.0 * y * y),
        -6.0 * C33 * y * z, -2.0 * C34 * x * y, -2.0 * C35 * y * z, -6.0 * C36 * x * y)


@wp.func
def sh_basis_grad_z(d: wp.vec3):
    x = d[0]
    y = d[1]
    z = d[2]
    return vec16(
        0.0, 0.0, SH_C1, 0.0,
        0.0, C21 * y, 4.0 * C22 * z, C23 * x, 0.0,
        0.0, C31 * x * y, 8.0 * C32 * y * z, C33 * (6.0 * z * z - 3.0 * x * x - 3.0 * y * y),
        8.0 * C34 * x * z, C35 * (x * x - y * y), 0.0)


@wp.func
def quat_rotmat(q: wp.vec4):
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w = q[0]
    x = q[1]
    y = q[2]
    z = q[3]
    return wp.mat33(
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
        2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
        2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y))


@wp.func
def quat_rotmat_vjp(q: wp.vec4, g: wp.mat33):
    """Gradient w.r.t. the unit quaternion q of <g, R(q)>."""
    w = q[0]
    x = q[1]
    y = q[2]
    z = q[3]
    gw = 2.0 * (-z * g[0, 1] + y * g[0, 2] + z * g[1, 0] - x * g[1, 2] - y * g[2, 0] + x * g[2, 1])
    gx = 2.0 * (y * g[0, 1] + z * g[0, 2] + y * g[1, 0] - 2.0 * x * g[1, 1] - w * g[1, 2]
                + z * g[2, 0] + w * g[2, 1] - 2.0 * x * g[2, 2])
    gy = 2.0 * (-2.0 * y * g[0, 0] + x * g[0, 1] + w * g[0, 2] + x * g[1, 0] + z * g[1, 2]
                - w * g[2, 0] + z * g[2, 1] - 2.0 * y * g[2, 2])
    gz = 2.0 * (-2.0 * z * g[0, 0] - w * g[0, 1] + x * g[0, 2] + w * g[1, 0] - 2.0 * z * g[1, 1]
                + y * g[1, 2] + x * g[2, 0] + y * g[2, 1])
    return wp.vec4(gw, gx, gy, gz)


@wp.func
def ewa_jacobian(p: wp.vec3, fx: float, fy: float, lim_xn: float, lim_xp: float, lim_yn: float, lim_yp: float):
    """2x3 Jacobian of the pinhole projection at camera point p, x/z and y/z clamped (returned as a 3x3, last row 0)."""
    rz = 1.0 / p[2]
    cx = wp.clamp(p[0] * rz, -lim_xn, lim_xp)
    cy = wp.clamp(p[1] * rz, -lim_yn, lim_yp)
    return wp.mat33(fx * rz, 0.0, -fx * cx * rz, 0.0, fy * rz, -fy * cy * rz, 0.0, 0.0, 0.0)


@wp.kernel
def project_fwd(
    means: wp.array(dtype=wp.vec3), quats: wp.array(dtype=wp.vec4), scales: wp.array(dtype=wp.vec3),
    opacities: wp.array(dtype=float), sh: wp.array2d(dtype=wp.vec3), n_coeffs: int,
    view_r: wp.mat33, view_t: wp.vec3, campos: wp.vec3, fx: float, fy: float, cx: float, cy: float,
    width: int, height: int, near: float, far: float, tiles_x: int, tiles_y: int,
    # outputs
    means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3), depths: wp.array(dtype=float),
    colors: wp.array(dtype=wp.vec3), smax: wp.array(dtype=float), radii: wp.array(dtype=wp.vec2i),
    rects: wp.array(dtype=wp.vec4i), n_tiles: wp.array(dtype=wp.int32),
):
    i = wp.tid()
    n_tiles[i] = 0
    radii[i] = wp.vec2i(0, 0)
    p = view_r * means[i] + view_t
    z = p[2]
    if z < near or z > far:
        return
    o = opacities[i]
    s = wp.log(255.0 * o)
    if not (s > 0.0):
        return
    fw = float(width)
    fh = float(height)
    lx = 0.15 * fw / fx
    ly = 0.15 * fh / fy
    J = ewa_jacobian(p, fx, fy, cx / fx + lx, (fw - cx) / fx + lx, cy / fy + ly, (fh - cy) / fy + ly)
    q = quats[i]
    R = quat_rotmat(q / wp.length(q))
    sc = scales[i]
    M = R * wp.diag(sc)
    T = J * view_r * M
    cov = T * wp.transpose(T)
    a = cov[0, 0] + EPS2D
    b = cov[0, 1]
    c = cov[1, 1] + EPS2D
    det = a * c - b * b
    if not (det > 0.0):
        return
    m2 = wp.vec2(fx * p[0] / z + cx, fy * p[1] / z + cy)
    rx = wp.ceil(wp.sqrt(2.0 * s * a))
    ry = wp.ceil(wp.sqrt(2.0 * s * c))
    if m2[0] + rx <= 0.0 or m2[0] - rx >= fw or m2[1] + ry <= 0.0 or m2[1] - ry >= fh:
        return
    ftx = float(tiles_x)
    fty = float(tiles_y)
    t0x = int(wp.clamp(wp.floor((m2[0] - rx) / float(TILE)), 0.0, ftx))
    t1x = int(wp.clamp(wp.ceil((m2[0] + rx) / float(TILE)), 0.0, ftx))
    t0y = int(wp.clamp(wp.floor((m2[1] - ry) / float(TILE)), 0.0, fty))
    t1y = int(wp.clamp(wp.ceil((m2[1] + ry) / float(TILE)), 0.0, fty))
    means2d[i] = m2
    conics[i] = wp.vec3(c / det, -b / det, a / det)
    depths[i] = z
    smax[i] = s
    radii[i] = wp.vec2i(int(wp.min(rx, 1.0e9)), int(wp.min(ry, 1.0e9)))
    rects[i] = wp.vec4i(t0x, t0y, t1x, t1y)
    n_tiles[i] = (t1x - t0x) * (t1y - t0y)
    d = means[i] - campos
    d = d / wp.max(wp.length(d), 1e-12)
    basis = sh_basis(d)
    col = wp.vec3(0.0)
    for k in range(n_coeffs):
        col += basis[k] * sh[i, k]
    colors[i] = wp.vec3(wp.max(col[0] + 0.5, 0.0), wp.max(col[1] + 0.5, 0.0), wp.max(col[2] + 0.5, 0.0))


@wp.kernel
def project_bwd(
    means: wp.array(dtype=wp.vec3), quats: wp.array(dtype=wp.vec4), scales: wp.array(dtype=wp.vec3),
    sh: wp.array2d(dtype=wp.vec3), n_coeffs: int,
    view_r: wp.mat33, view_t: wp.vec3, campos: wp.vec3, fx: float, fy: float, cx: float, cy: float,
    width: int, height: int, radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
    colors: wp.array(dtype=wp.vec3),
    v_means2d: wp.array(dtype=wp.vec2), v_conics: wp.array(dtype=wp.vec3), v_colors: wp.array(dtype=wp.vec3),
    v_depths: wp.array(dtype=float),
    # outputs
    v_means: wp.array(dtype=wp.vec3), v_quats: wp.array(dtype=wp.vec4), v_scales: wp.array(dtype=wp.vec3),
    v_sh: wp.array2d(dtype=wp.vec3),
):
    i = wp.tid()
    if radii[i][0] == 0:
        return
    p = view_r * means[i] + view_t
    x = p[0]
    y = p[1]
    z = p[2]
    rz = 1.0 / z
    # screen position and depth
    vm = v_means2d[i]
    v_p = wp.vec3(fx * rz * vm[0], fy * rz * vm[1], -(fx * x * vm[0] + fy * y * vm[1]) * rz * rz + v_depths[i])
    # conic = inverse(cov2d): dL/dcov = -Q G Q, G the symmetric gradient w.r.t. Q
    cn = conics[i]
    vc = v_conics[i]
    Q = wp.mat22(cn[0], cn[1], cn[1], cn[2])
    G = wp.mat22(vc[0], 0.5 * vc[1], 0.5 * vc[1], vc[2])
    Gc2 = -(Q * G * Q)
    Gc = wp.mat33(Gc2[0, 0], Gc2[0, 1], 0.0, Gc2[1, 0], Gc2[1, 1], 0.0, 0.0, 0.0, 0.0)
    fw = float(width)
    fh = float(height)
    lx = 0.15 * fw / fx
    ly = 0.15 * fh / fy
    lxn = cx / fx + lx
    lxp = (fw - cx) / fx + lx
    lyn = cy / fy + ly
    lyp = (fh - cy) / fy + ly
    J = ewa_jacobian(p, fx, fy, lxn, lxp, lyn, lyp)
    qn_len = wp.length(quats[i])
    qn = quats[i] / qn_len
    R = quat_rotmat(qn)
    sc = scales[i]
    M = R * wp.diag(sc)
    Sig = M * wp.transpose(M)
    JW = J * view_r
    # cov2d = JW Sig JW^T
    v_JW = 2.0 * Gc * JW * Sig
    v_Sig = wp.transpose(JW) * Gc * JW
    v_J = v_JW * wp.transpose(view_r)
    # J = [[fx/z, 0, -fx cx/z], [0, fy/z, -fy cy/z]] with cx = clamp(x/z), cy = clamp(y/z)
    ux = x * rz
    uy = y * rz
    clx = wp.clamp(ux, -lxn, lxp)
    cly = wp.clamp(uy, -lyn, lyp)
    rz2 = rz * rz
    v_z = -fx * rz2 * v_J[0, 0] - fy * rz2 * v_J[1, 1] + fx * clx * rz2 * v_J[0, 2] + fy * cly * rz2 * v_J[1, 2]
    v_clx = -fx * rz * v_J[0, 2]
    v_cly = -fy * rz * v_J[1, 2]
    v_x = float(0.0)
    v_y = float(0.0)
    if ux >= -lxn and ux <= lxp:
        v_x = v_clx * rz
        v_z -= v_clx * ux * rz
    if uy >= -lyn and uy <= lyp:
        v_y = v_cly * rz
        v_z -= v_cly * uy * rz
    v_p += wp.vec3(v_x, v_y, v_z)
    vmean = wp.transpose(view_r) * v_p
    # Sig = M M^T, M = R diag(s)
    v_M = 2.0 * v_Sig * M
    v_R = v_M * wp.diag(sc)
    v_scales[i] = wp.vec3(
        R[0, 0] * v_M[0, 0] + R[1, 0] * v_M[1, 0] + R[2, 0] * v_M[2, 0],
        R[0, 1] * v_M[0, 1] + R[1, 1] * v_M[1, 1] + R[2, 1] * v_M[2, 1],
        R[0, 2] * v_M[0, 2] + R[1, 2] * v_M[1, 2] + R[2, 2] * v_M[2, 2])
    v_qn = quat_rotmat_vjp(qn, v_R)
    v_quats[i] = (v_qn - qn * wp.dot(qn, v_qn)) / qn_len
    # colour = max(sum_k basis_k sh_k + 0.5, 0)
    col = colors[i]
    vcol = v_colors[i]
    vraw = wp.vec3(wp.where(col[0] > 0.0, vcol[0], 0.0), wp.where(col[1] > 0.0, vcol[1], 0.0),
                   wp.where(col[2] > 0.0, vcol[2], 0.0))
    dv = means[i] - campos
    dlen = wp.max(wp.length(dv), 1e-12)
    d = dv / dlen
    basis = sh_basis(d)
    for k in range(n_coeffs):
        v_sh[i, k] = basis[k] * vraw
    if n_coeffs > 1:
        gx = sh_basis_grad_x(d)
        gy = sh_basis_grad_y(d)
        gz = sh_basis_grad_z(d)
        v_d = wp.vec3(0.0)
        for k in range(1, n_coeffs):
            s = wp.dot(sh[i, k], vraw)
            v_d += s * wp.vec3(gx[k], gy[k], gz[k])
        vmean += (v_d - d * wp.dot(d, v_d)) / dlen
    v_means[i] = vmean
