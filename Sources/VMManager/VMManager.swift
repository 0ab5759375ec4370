// VMManager module
