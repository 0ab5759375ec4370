/* Local display and input ioctls for the thin client (see cb_viewer.h).
 * The DRM structures are the kernel's UAPI (include/uapi/drm/drm_mode.h),
 * declared here so the build needs no libdrm headers. */
#define _GNU_SOURCE
#include "cb_viewer.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/fb.h>
#include <linux/input.h>
#include <linux/kd.h>
#include <linux/vt.h>

struct cb_drm_card_res {
    uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
    uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
    uint32_t min_width, max_width, min_height, max_height;
};
struct cb_drm_modeinfo {
    uint32_t clock;
    uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
    uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
    uint32_t vrefresh, flags, type;
    char name[32];
};
struct cb_drm_get_connector {
    uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
    uint32_t count_modes, count_props, count_encoders;
    uint32_t encoder_id, connector_id, connector_type, connector_type_id;
    uint32_t connection, mm_width, mm_height, subpixel, pad;
};
struct cb_drm_get_encoder {
    uint32_t encoder_id, encoder_type, crtc_id, possible_crtcs, possible_clones;
};
struct cb_drm_crtc {
    uint64_t set_connectors_ptr;
    uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
    struct cb_drm_modeinfo mode;
};
struct cb_drm_create_dumb { uint32_t height, width, bpp, flags, handle, pitch; uint64_t size; };
struct cb_drm_map_dumb { uint32_t handle, pad; uint64_t offset; };
struct cb_drm_destroy_dumb { uint32_t handle; };
struct cb_drm_fb_cmd { uint32_t fb_id, width, height, pitch, bpp, depth, handle; };
struct cb_drm_clip_rect { unsigned short x1, y1, x2, y2; };
struct cb_drm_fb_dirty_cmd { uint32_t fb_id, flags, color, num_clips; uint64_t clips_ptr; };

#define CB_DRM_IOWR(nr, type) _IOWR('d', nr, type)
#define CB_DRM_GETRESOURCES CB_DRM_IOWR(0xA0, struct cb_drm_card_res)
#define CB_DRM_SETCRTC CB_DRM_IOWR(0xA2, struct cb_drm_crtc)
#define CB_DRM_GETENCODER CB_DRM_IOWR(0xA6, struct cb_drm_get_encoder)
#define CB_DRM_GETCONNECTOR CB_DRM_IOWR(0xA7, struct cb_drm_get_connector)
#define CB_DRM_ADDFB CB_DRM_IOWR(0xAE, struct cb_drm_fb_cmd)
#define CB_DRM_RMFB CB_DRM_IOWR(0xAF, unsigned int)
#define CB_DRM_DIRTYFB CB_DRM_IOWR(0xB1, struct cb_drm_fb_dirty_cmd)
#define CB_DRM_CREATE_DUMB CB_DRM_IOWR(0xB2, struct cb_drm_create_dumb)
#define CB_DRM_MAP_DUMB CB_DRM_IOWR(0xB3, struct cb_drm_map_dumb)
#define CB_DRM_DESTROY_DUMB CB_DRM_IOWR(0xB4, struct cb_drm_destroy_dumb)
#define CB_DRM_MODE_TYPE_PREFERRED (1 << 3)
#define CB_DRM_MODE_CONNECTED 1

static int xioctl(int fd, unsigned long req, void *arg) {
    int r;
    do { r = ioctl(fd, req, arg); } while (r < 0 && (errno == EINTR || errno == EAGAIN));
    return r < 0 ? -errno : 0;
}

static struct cb_drm_modeinfo cb_drm_saved_mode;

int cb_drm_open(const char *path, struct cb_display_info *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct cb_drm_card_res res = {0};
    int rc = xioctl(fd, CB_DRM_GETRESOURCES, &res);
    if (rc < 0) { close(fd); return rc; }
    uint32_t *crtcs = calloc(res.count_crtcs + 1, 4), *conns = calloc(res.count_connectors + 1, 4);
    uint32_t *encs = calloc(res.count_encoders + 1, 4);
    res.fb_id_ptr = 0; res.count_fbs = 0;
    res.crtc_id_ptr = (uintptr_t)crtcs; res.connector_id_ptr = (uintptr_t)conns; res.encoder_id_ptr = (uintptr_t)encs;
    rc = xioctl(fd, CB_DRM_GETRESOURCES, &res);
    struct cb_drm_modeinfo mode = {0};
    uint32_t conn_id = 0, crtc_id = 0;
    for (uint32_t i = 0; rc == 0 && i < res.count_connectors && !conn_id; i++) {
        struct cb_drm_get_connector c = {0};
        c.connector_id = conns[i];
        if (xioctl(fd, CB_DRM_GETCONNECTOR, &c) < 0) continue;
        if (c.connection != CB_DRM_MODE_CONNECTED || c.count_modes == 0) continue;
        uint32_t nmodes = c.count_modes, nencs = c.count_encoders;
        struct cb_drm_modeinfo *modes = calloc(nmodes, sizeof *modes);
        uint32_t *cencs = calloc(nencs + 1, 4);
        c.modes_ptr = (uintptr_t)modes; c.encoders_ptr = (uintptr_t)cencs;
        c.count_props = 0; c.props_ptr = 0; c.prop_values_ptr = 0;
        if (xioctl(fd, CB_DRM_GETCONNECTOR, &c) == 0 && c.count_modes > 0) {
            uint32_t n = c.count_modes < nmodes ? c.count_modes : nmodes;
            mode = modes[0];
            for (uint32_t m = 0; m < n; m++)
                if (modes[m].type & CB_DRM_MODE_TYPE_PREFERRED) { mode = modes[m]; break; }
            /* the CRTC of the current encoder, else the first one an encoder allows */
            struct cb_drm_get_encoder e = {0};
            e.encoder_id = c.encoder_id;
            if (c.encoder_id && xioctl(fd, CB_DRM_GETENCODER, &e) == 0 && e.crtc_id) crtc_id = e.crtc_id;
            uint32_t ne = c.count_encoders < nencs ? c.count_encoders : nencs;
            for (uint32_t k = 0; !crtc_id && k < ne; k++) {
                struct cb_drm_get_encoder e2 = {0};
                e2.encoder_id = cencs[k];
                if (xioctl(fd, CB_DRM_GETENCODER, &e2) < 0) continue;
                for (uint32_t j = 0; j < res.count_crtcs; j++)
                    if (e2.possible_crtcs & (1u << j)) { crtc_id = crtcs[j]; break; }
            }
            if (crtc_id) conn_id = conns[i];
        }
        free(modes); free(cencs);
    }
    free(crtcs); free(conns); free(encs);
    if (!conn_id) { close(fd); return rc < 0 ? rc : -ENODEV; }

    struct cb_drm_create_dumb cd = {0};
    cd.width = mode.hdisplay; cd.height = mode.vdisplay; cd.bpp = 32;
    if ((rc = xioctl(fd, CB_DRM_CREATE_DUMB, &cd)) < 0) { close(fd); return rc; }
    struct cb_drm_fb_cmd fb = {0};
    fb.width = cd.width; fb.height = cd.height; fb.pitch = cd.pitch; fb.bpp = 32; fb.depth = 24; fb.handle = cd.handle;
    if ((rc = xioctl(fd, CB_DRM_ADDFB, &fb)) < 0) goto fail_dumb;
    struct cb_drm_map_dumb md = {0};
    md.handle = cd.handle;
    if ((rc = xioctl(fd, CB_DRM_MAP_DUMB, &md)) < 0) goto fail_fb;
    void *map = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, md.offset);
    if (map == MAP_FAILED) { rc = -errno; goto fail_fb; }
    memset(map, 0, cd.size);
    out->fd = fd; out->width = cd.width; out->height = cd.height; out->stride = cd.pitch; out->bpp = 32;
    out->red_offset = 16; out->red_length = 8; out->green_offset = 8; out->green_length = 8;
    out->blue_offset = 0; out->blue_length = 8;
    out->size = cd.size; out->map = map;
    out->connector_id = conn_id; out->crtc_id = crtc_id; out->fb_id = fb.fb_id; out->handle = cd.handle;
    memcpy(out->mode_name, mode.name, sizeof out->mode_name);
    out->mode_name[31] = 0;
    cb_drm_saved_mode = mode;
    if ((rc = cb_drm_show(out)) < 0) { cb_drm_close(out); return rc; }
    return 0;
fail_fb:
    xioctl(fd, CB_DRM_RMFB, &fb.fb_id);
fail_dumb: {
    struct cb_drm_destroy_dumb dd = { cd.handle };
    xioctl(fd, CB_DRM_DESTROY_DUMB, &dd);
    close(fd);
    return rc;
    }
}

int cb_drm_show(struct cb_display_info *d) {
    struct cb_drm_crtc c = {0};
    uint32_t conn = d->connector_id;
    c.set_connectors_ptr = (uintptr_t)&conn;
    c.count_connectors = 1;
    c.crtc_id = d->crtc_id;
    c.fb_id = d->fb_id;
    c.mode_valid = 1;
    c.mode = cb_drm_saved_mode;
    return xioctl(d->fd, CB_DRM_SETCRTC, &c);
}

int cb_drm_dirty(struct cb_display_info *d, uint32_t x, uint32_t y, uint32_t w, uint32_t h) {
    struct cb_drm_clip_rect r = { (unsigned short)x, (unsigned short)y, (unsigned short)(x + w), (unsigned short)(y + h) };
    struct cb_drm_fb_dirty_cmd cmd = {0};
    cmd.fb_id = d->fb_id; cmd.num_clips = 1; cmd.clips_ptr = (uintptr_t)&r;
    int rc = xioctl(d->fd, CB_DRM_DIRTYFB, &cmd);
    return rc == -ENOSYS ? 0 : rc;
}

void cb_drm_close(struct cb_display_info *d) {
    if (d->fd < 0) return;
    if (d->map) munmap(d->map, d->size);
    xioctl(d->fd, CB_DRM_RMFB, &d->fb_id);
    struct cb_drm_destroy_dumb dd = { d->handle };
    xioctl(d->fd, CB_DRM_DESTROY_DUMB, &dd);
    close(d->fd);
    d->fd = -1; d->map = NULL;
}

int cb_fb_open(const char *path, struct cb_display_info *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct fb_var_screeninfo v;
    struct fb_fix_screeninfo f;
    int rc;
    if ((rc = xioctl(fd, FBIOGET_VSCREENINFO, &v)) < 0 || (rc = xioctl(fd, FBIOGET_FSCREENINFO, &f)) < 0) {
        close(fd); return rc;
    }
    if (v.bits_per_pixel != 16 && v.bits_per_pixel != 24 && v.bits_per_pixel != 32) { close(fd); return -ENOTSUP; }
    uint64_t size = (uint64_t)f.line_length * (v.yoffset + v.yres);
    if (f.smem_len && size > f.smem_len) size = f.smem_len;
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) { rc = -errno; close(fd); return rc; }
    out->fd = fd; out->width = v.xres; out->height = v.yres; out->stride = f.line_length;
    out->bpp = v.bits_per_pixel;
    out->red_offset = v.red.offset; out->red_length = v.red.length;
    out->green_offset = v.green.offset; out->green_length = v.green.length;
    out->blue_offset = v.blue.offset; out->blue_length = v.blue.length;
    out->size = size;
    /* the visible area starts at the panning offset */
    out->map = map;
    out->offset = (uint64_t)((uint64_t)f.line_length * v.yoffset + (uint64_t)v.xoffset * v.bits_per_pixel / 8);
    return 0;
}

void cb_fb_close(struct cb_display_info *d) {
    if (d->fd < 0) return;
    if (d->map) munmap(d->map, d->size);
    close(d->fd);
    d->fd = -1; d->map = NULL;
}

#define BITS_LONG (8 * sizeof(unsigned long))
#define TEST_BIT(arr, bit) ((arr[(bit) / BITS_LONG] >> ((bit) % BITS_LONG)) & 1)

int cb_evdev_caps(int fd, struct cb_evdev_caps *out) {
    memset(out, 0, sizeof *out);
    unsigned long ev[(EV_MAX + BITS_LONG) / BITS_LONG] = {0};
    unsigned long keys[(KEY_MAX + BITS_LONG) / BITS_LONG] = {0};
    unsigned long rel[(REL_MAX + BITS_LONG) / BITS_LONG] = {0};
    unsigned long abs_[(ABS_MAX + BITS_LONG) / BITS_LONG] = {0};
    if (ioctl(fd, EVIOCGBIT(0, sizeof ev), ev) < 0) return -errno;
    if (TEST_BIT(ev, EV_KEY)) ioctl(fd, EVIOCGBIT(EV_KEY, sizeof keys), keys);
    if (TEST_BIT(ev, EV_REL)) ioctl(fd, EVIOCGBIT(EV_REL, sizeof rel), rel);
    if (TEST_BIT(ev, EV_ABS)) ioctl(fd, EVIOCGBIT(EV_ABS, sizeof abs_), abs_);
    out->keyboard = TEST_BIT(keys, KEY_A) && TEST_BIT(keys, KEY_Z) && TEST_BIT(keys, KEY_ENTER);
    out->relative = TEST_BIT(rel, REL_X) && TEST_BIT(rel, REL_Y);
    out->absolute = TEST_BIT(abs_, ABS_X) && TEST_BIT(abs_, ABS_Y);
    out->buttons = TEST_BIT(keys, BTN_LEFT) || TEST_BIT(keys, BTN_TOUCH);
    if (out->absolute) {
        struct input_absinfo ax, ay;
        if (ioctl(fd, EVIOCGABS(ABS_X), &ax) == 0) { out->abs_x_min = ax.minimum; out->abs_x_max = ax.maximum; }
        if (ioctl(fd, EVIOCGABS(ABS_Y), &ay) == 0) { out->abs_y_min = ay.minimum; out->abs_y_max = ay.maximum; }
    }
    if (ioctl(fd, EVIOCGNAME(sizeof out->name - 1), out->name) < 0) out->name[0] = 0;
    return 0;
}

int cb_evdev_grab(int fd, int on) {
    return ioctl(fd, EVIOCGRAB, (void *)(intptr_t)(on ? 1 : 0)) < 0 ? -errno : 0;
}

int cb_vt_active(void) {
    int fd = open("/dev/tty0", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -errno;
    struct vt_stat st;
    int rc = ioctl(fd, VT_GETSTATE, &st) < 0 ? -errno : st.v_active;
    close(fd);
    return rc;
}

int cb_vt_activate(int n) {
    int fd = open("/dev/tty0", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return -errno;
    int rc = 0;
    if (ioctl(fd, VT_ACTIVATE, n) < 0 || ioctl(fd, VT_WAITACTIVE, n) < 0) rc = -errno;
    close(fd);
    return rc;
}

int cb_vt_set_graphics(int fd, int graphics) {
    return ioctl(fd, KDSETMODE, graphics ? KD_GRAPHICS : KD_TEXT) < 0 ? -errno : 0;
}

#include <linux/uinput.h>

int cb_uinput_open(const char *name) {
    int fd = open("/dev/uinput", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (ioctl(fd, UI_SET_EVBIT, EV_KEY) < 0 || ioctl(fd, UI_SET_EVBIT, EV_SYN) < 0 || ioctl(fd, UI_SET_EVBIT, EV_REP) < 0) goto fail;
    for (int k = 1; k < 128; k++) ioctl(fd, UI_SET_KEYBIT, k);
    struct uinput_user_dev u;
    memset(&u, 0, sizeof u);
    strncpy(u.name, name, UINPUT_MAX_NAME_SIZE - 1);
    u.id.bustype = BUS_VIRTUAL;
    u.id.vendor = 0x4342; u.id.product = 0x0001; u.id.version = 1;
    if (write(fd, &u, sizeof u) != (ssize_t)sizeof u) goto fail;
    if (ioctl(fd, UI_DEV_CREATE) < 0) goto fail;
    return fd;
fail: {
    int e = errno;
    close(fd);
    return -e;
    }
}

int cb_uinput_key(int fd, uint16_t code, int32_t value) {
    struct input_event ev[2];
    memset(ev, 0, sizeof ev);
    ev[0].type = EV_KEY; ev[0].code = code; ev[0].value = value;
    ev[1].type = EV_SYN; ev[1].code = SYN_REPORT; ev[1].value = 0;
    return write(fd, ev, sizeof ev) == (ssize_t)sizeof ev ? 0 : -errno;
}

void cb_uinput_close(int fd) {
    if (fd < 0) return;
    ioctl(fd, UI_DEV_DESTROY);
    close(fd);
}
