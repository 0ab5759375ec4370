// Init module
