#ifndef CLOUDBIOS_CB_VIEWER_H
#define CLOUDBIOS_CB_VIEWER_H
/* Local display and input for the thin client: DRM dumb buffers, fbdev,
 * evdev and the virtual terminal. Thin wrappers over ioctls whose request
 * numbers are macros. Every function returns 0 (or a descriptor) on success
 * and -errno on failure unless noted. */
#include <stddef.h>
#include <stdint.h>

/* A scan-out buffer the CPU can write: a DRM dumb buffer or an fbdev mapping. */
struct cb_display_info {
    int fd;
    uint32_t width, height;      /* visible pixels */
    uint32_t stride;             /* bytes per row */
    uint32_t bpp;                /* bits per pixel: 16, 24 or 32 */
    uint32_t red_offset, red_length, green_offset, green_length, blue_offset, blue_length;
    uint64_t size;               /* bytes mapped */
    void *map;
    uint64_t offset;             /* first visible byte in map (fbdev panning) */
    /* DRM only */
    uint32_t connector_id, crtc_id, fb_id, handle;
    char mode_name[32];
};

/* Opens a DRM card, picks the first connected connector and its preferred
 * mode, allocates a 32 bpp XRGB8888 dumb buffer, maps it and sets the CRTC. */
int cb_drm_open(const char *path, struct cb_display_info *out);
/* Re-sets the CRTC to the dumb buffer (after a VT switch or master drop). */
int cb_drm_show(struct cb_display_info *d);
/* Tells drivers that shadow the buffer (simpledrm, virtio) what changed. */
int cb_drm_dirty(struct cb_display_info *d, uint32_t x, uint32_t y, uint32_t w, uint32_t h);
/* Unmaps, removes the framebuffer, frees the buffer and closes the card; the
 * kernel's fbdev emulation takes the screen back. */
void cb_drm_close(struct cb_display_info *d);

/* Opens an fbdev device (/dev/fb0) and maps its visible area. */
int cb_fb_open(const char *path, struct cb_display_info *out);
void cb_fb_close(struct cb_display_info *d);

/* What an evdev device can do. */
struct cb_evdev_caps {
    int keyboard;        /* has letter keys */
    int relative;        /* REL_X + REL_Y */
    int absolute;        /* ABS_X + ABS_Y */
    int buttons;         /* BTN_LEFT or BTN_TOUCH */
    int32_t abs_x_min, abs_x_max, abs_y_min, abs_y_max;
    char name[128];
};
int cb_evdev_caps(int fd, struct cb_evdev_caps *out);
int cb_evdev_grab(int fd, int on);

/* The active virtual terminal number (1-based), via /dev/tty0. */
int cb_vt_active(void);
/* Switches to VT n and waits until it is active. */
int cb_vt_activate(int n);
/* KD_GRAPHICS (1) stops the text console drawing on the screen; KD_TEXT (0)
 * makes it redraw. fd: an open /dev/ttyN. */
int cb_vt_set_graphics(int fd, int graphics);

/* A virtual keyboard (uinput) whose keys reach the console and the viewer. */
int cb_uinput_open(const char *name);
int cb_uinput_key(int fd, uint16_t code, int32_t value);
void cb_uinput_close(int fd);

#endif
