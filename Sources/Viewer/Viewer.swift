// Viewer module
