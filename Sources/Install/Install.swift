// Install module
