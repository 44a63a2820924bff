/* The dashboard's files (ui/), embedded in pl-api at build time so that it is served without
 * any other host or an install step (air-gapped sites). */
#ifndef PL_UI_ASSETS_H
#define PL_UI_ASSETS_H

#include <stddef.h>

struct pl_ui_asset {
    const char *name; /* "index.html", "app.js": the path under /ui/ */
    const unsigned char *bytes;
    size_t len;
};

/** Every asset, ended by an entry whose name is NULL. */
extern const struct pl_ui_asset pl_ui_assets[];

#endif
