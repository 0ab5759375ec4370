#include <rfb/rfbclient.h>
#include <rfb/rfb.h>
