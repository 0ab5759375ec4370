// swift-tools-version:6.0
import PackageDescription

// One package, one multi-call executable (`cloudbios`) and the small static
// PID 1 of app microVMs (`cloudbios-app-init`). Pure modules (Config,
// QEMU argv/QMP codec, install planner, router) build and test anywhere; edge
// modules wrap the C libraries and touch /dev, /sys and processes.
let package = Package(
    name: "CloudBIOS",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cloudbios", targets: ["cloudbios"]),
        .executable(name: "cloudbios-app-init", targets: ["cloudbios-app-init"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C system libraries (module maps; headers only)
        .systemLibrary(name: "CBlkid", path: "Sources/CBlkid", pkgConfig: "blkid"),
        .systemLibrary(name: "CParted", path: "Sources/CParted"),  // Install loads libparted on first use
        .systemLibrary(name: "CMicroHTTPD", path: "Sources/CMicroHTTPD"),  // CTLS loads it with GnuTLS on first use
        .systemLibrary(name: "CVNC", path: "Sources/CVNC"),  // CVNCLoader loads libvnc* on first use
        // Small C helpers for macros, variadics and ioctls, one target per
        // library or kernel interface, so a module sees only the C it uses.
        // Those that need GnuTLS, nettle, libcrypt, libmicrohttpd and
        // libvnc* load them when first needed (dlopen): cloudbios links none.
        .target(name: "CBase", path: "Sources/CBase"),  // errno, posix_spawn, pidfd: Platform's processes
        .target(name: "CXXHash", path: "Sources/CXXHash"),  // XXH3-128 of files (xxhash.h alone): backups' checksums
        .target(name: "CDisks", path: "Sources/CDisks"),  // block-device and loop-device ioctls
        .target(name: "CInit", path: "Sources/CInit"),  // PID 1: signals, uevents, reboot, input events
        .target(name: "CKVM", path: "Sources/CKVM"),  // the KVM probe's child
        .target(name: "CTLS", path: "Sources/CTLS"),  // the GnuTLS/nettle/libcrypt/libmicrohttpd loader and what calls through it
        .target(name: "CTap", path: "Sources/CTap"),  // tap devices
        .target(name: "CViewer", path: "Sources/CViewer"),  // DRM, fbdev, evdev, VTs, uinput
        .target(name: "CVNCLoader", path: "Sources/CVNCLoader"),  // libvncclient/libvncserver, loaded on first use

        // Swift modules
        .target(name: "Platform", dependencies: ["CBase", "CDisks", "CKVM", "CTLS", "CXXHash"]),
        .target(name: "Config", dependencies: []),
        .target(name: "QEMU", dependencies: ["Config", "Platform"]),
        .target(name: "VMManager", dependencies: ["Config", "QEMU", "Platform", "CDisks", "CTap"]),
        .target(name: "Disks", dependencies: ["Config", "Platform", "CBlkid", "CParted"]),
        .target(name: "Install", dependencies: ["Config", "Disks", "Platform", "CParted", "CBlkid", "CDisks"]),
        .target(name: "Apps", dependencies: ["Config", "Platform", "CTLS"]),
        .target(name: "Panel", dependencies: ["Config", "Platform", "CMicroHTTPD", "CTLS"]),
        .target(name: "Viewer", dependencies: ["Config", "Platform", "CVNC", "CVNCLoader", "CViewer"]),
        .target(name: "Fleet", dependencies: ["Config", "Platform", "CTLS"]),  // etcd's client and member, the fleet's certificates and membership
        .target(name: "Init", dependencies: ["Config", "Platform", "Disks", "Install", "QEMU", "CDisks", "CInit"]),
        // An app microVM's PID 1, in C and linked statically, so the
        // initramfs every app boots is a few MiB (Sources/Apps/Initramfs.swift)
        .executableTarget(name: "cloudbios-app-init", path: "Sources/cloudbios-app-init",
                          linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xclang-linker", "-static"])]),
        .executableTarget(name: "cloudbios", dependencies: [
            "Config", "Platform", "QEMU", "VMManager", "Disks", "Install", "Panel", "Viewer", "Init", "Apps", "Fleet",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Tests
        .testTarget(name: "ConfigTests", dependencies: ["Config"], resources: [.copy("Fixtures")]),
        .testTarget(name: "PlatformTests", dependencies: ["Platform"]),
        .testTarget(name: "QEMUTests", dependencies: ["QEMU", "Config"], resources: [.copy("Golden")]),
        .testTarget(name: "VMManagerTests", dependencies: ["VMManager", "QEMU", "Config", "Platform"]),
        .testTarget(name: "DisksTests", dependencies: ["Disks", "Config"]),
        .testTarget(name: "InstallTests", dependencies: ["Install", "Disks", "Config"]),
        .testTarget(name: "PanelTests", dependencies: ["Panel", "Config", "Platform"]),
        .testTarget(name: "ViewerTests", dependencies: ["Viewer"]),
        .testTarget(name: "AppsTests", dependencies: ["Apps", "Config"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet", "Config", "Platform"]),
        .testTarget(name: "InitTests", dependencies: ["Init", "Config", "Disks"]),
    ],
    swiftLanguageModes: [.v6]
)
