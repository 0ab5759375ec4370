// swift-tools-version:6.0
import PackageDescription

// One package, one multi-call executable (`cloudbios`). Pure modules (Config,
// QEMU argv/QMP codec, install planner, router) build and test anywhere; edge
// modules wrap the C libraries and touch /dev, /sys and processes.
let package = Package(
    name: "CloudBIOS",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cloudbios", targets: ["cloudbios"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C system libraries (module maps + small shims)
        .systemLibrary(name: "CBlkid", path: "Sources/CBlkid", pkgConfig: "blkid"),
        .systemLibrary(name: "CParted", path: "Sources/CParted"),  // headers only: Install loads libparted on first use
        .systemLibrary(name: "CMicroHTTPD", path: "Sources/CMicroHTTPD"),  // headers only: loaded with GnuTLS on first use
        .systemLibrary(name: "CVNC", path: "Sources/CVNC"),  // headers only: CShims/vnc.c loads libvnc* on first use
        // Small C helpers for macros, variadics and ioctls; they load GnuTLS,
        // nettle, libcrypt, libmicrohttpd and libvnc* when first needed
        // (dlopen), so cloudbios links none of them.
        .target(name: "CShims", path: "Sources/CShims"),

        // Swift modules
        .target(name: "Platform", dependencies: ["CShims"]),
        .target(name: "Config", dependencies: []),
        .target(name: "QEMU", dependencies: ["Config", "Platform"]),
        .target(name: "VMManager", dependencies: ["Config", "QEMU", "Platform", "CShims"]),
        .target(name: "Disks", dependencies: ["Config", "Platform", "CBlkid", "CParted"]),
        .target(name: "Install", dependencies: ["Config", "Disks", "Platform", "CParted", "CBlkid", "CShims"]),
        .target(name: "Panel", dependencies: ["Config", "Platform", "CMicroHTTPD", "CShims"]),
        .target(name: "Viewer", dependencies: ["Config", "Platform", "CVNC", "CShims"]),
        .target(name: "Init", dependencies: ["Config", "Platform", "Disks", "Install", "QEMU"]),
        .executableTarget(name: "cloudbios", dependencies: [
            "Config", "Platform", "QEMU", "VMManager", "Disks", "Install", "Panel", "Viewer", "Init",
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
        .testTarget(name: "InitTests", dependencies: ["Init", "Config", "Disks"]),
    ],
    swiftLanguageModes: [.v6]
)
