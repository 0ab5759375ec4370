"""Apps, end to end: images pulled from a real registry (Debian's
docker-registry on loopback) holding images built here from busybox-static,
pushed with skopeo; root filesystems checked by unpacking them with
fsck.erofs; the same image from OCI and docker archives in the image
store (`store:NAME`). Bad input: an unknown image, a tampered layer, an image for
another architecture only."""
import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import cbdaemon  # noqa: E402
import oci_registry  # noqa: E402


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry holding busybox:1 (two layers), multi:1 (an index of amd64
    and arm64), armonly:1 (an index of arm64 only), armsingle:1 (an arm64
    manifest) and tampered:1 (a layer whose bytes were changed after the push)."""
    work = str(tmp_path_factory.mktemp("registry"))
    reg = oci_registry.LocalRegistry(work)
    layout = oci_registry.Layout(os.path.join(work, "layout"))
    layers = oci_registry.busybox_layers()
    amd64 = layout.image(layers, cmd=["httpd", "-f", "-p", "8080", "-h", "/www"])
    layout.tag("1", amd64)
    arm = layout.image(layers[:1], arch="arm64")
    layout.tag("arm", arm)
    layout.tag_index("multi", [arm, amd64])
    layout.tag_index("armonly", [arm])
    # a layer of its own, so that tampering with it touches no other image
    odd = oci_registry._tar_gz([("odd.txt", "file", b"x" * 4096, 0o644)])
    tampered = layout.image([odd])
    layout.tag("tampered", tampered)
    reg.push(layout, "1", "busybox:1")
    reg.push(layout, "multi", "multi:1", all_platforms=True)
    reg.push(layout, "armonly", "armonly:1", all_platforms=True)
    reg.push(layout, "arm", "armsingle:1")
    reg.push(layout, "tampered", "tampered:1")
    # layers that try to write through a lower layer's symlink to the host,
    # and replace a directory by a file
    outside = os.path.join(work, "outside")
    os.makedirs(outside)
    tricky = layout.image([
        oci_registry._tar_gz([("escape", "link", outside, 0o777), ("rel", "link", "data", 0o777),
                              ("data", "dir", None, 0o755), ("data/a.txt", "file", b"a", 0o644),
                              ("was-dir", "dir", None, 0o755), ("was-dir/x", "file", b"x", 0o644)]),
        oci_registry._tar_gz([("escape/pwned.txt", "file", b"pwned", 0o644), ("rel/b.txt", "file", b"b", 0o644),
                              ("was-dir", "file", b"now a file", 0o600)]),
    ])
    layout.tag("tricky", tricky)
    reg.push(layout, "tricky", "tricky:1")
    reg.outside = outside
    odd_digest = "sha256:" + __import__("hashlib").sha256(odd).hexdigest()
    path = reg.blob_file(odd_digest)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    reg.odd_digest = odd_digest
    reg.layout = layout
    yield reg
    reg.stop()


def pull(state, image, *extra):
    return subprocess.run([cbdaemon.binary(), "apps", "pull", "--state-dir", state, "--json", *extra, image],
                          capture_output=True, text=True, timeout=300)


def unpack(rootfs, into):
    subprocess.run(["fsck.erofs", f"--extract={into}", rootfs], check=True, capture_output=True, timeout=120)


def blobs(state):
    d = os.path.join(state, "apps", "blobs", "sha256")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_pull_builds_the_root_filesystem_once(registry, tmp_path):
    state = str(tmp_path / "state")
    r = pull(state, f"{registry.host}/busybox:1")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["digest"].startswith("sha256:") and first["layers_downloaded"] == 2
    assert first["config"]["cmd"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]
    assert first["config"]["env"] == ["PATH=/bin"]
    root = str(tmp_path / "root")
    unpack(first["rootfs"], root)
    assert open(os.path.join(root, "www/index.html")).read() == "hello from the cloudbios app image\n"
    assert "ID=cbtest" in open(os.path.join(root, "etc/os-release")).read()
    assert os.readlink(os.path.join(root, "bin/httpd")) == "busybox"
    assert os.access(os.path.join(root, "bin/busybox"), os.X_OK)
    assert oct(os.stat(os.path.join(root, "tmp")).st_mode & 0o7777) == "0o1777"
    # the second layer's whiteout and opaque directory
    assert not os.path.exists(os.path.join(root, "etc/gone.txt"))
    assert sorted(os.listdir(os.path.join(root, "opaque"))) == ["new.txt"]
    assert not any(n.startswith(".wh.") for _, dirs, files in os.walk(root) for n in dirs + files)
    # config + 2 layers kept by digest, nothing half-written
    kept = blobs(state)
    assert len(kept) == 3 and not any(n.startswith(".") for n in kept)

    # again: nothing downloaded, the same root filesystem
    r = pull(state, f"{registry.host}/busybox:1")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["layers_downloaded"] == 0 and again["rootfs"] == first["rootfs"] and again["digest"] == first["digest"]

    # by digest: the same image
    r = pull(state, f"{registry.host}/busybox@{first['digest']}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rootfs"] == first["rootfs"]


def test_layers_stack_as_overlayfs_and_never_write_through_symlinks(registry, tmp_path):
    state = str(tmp_path / "state")
    r = pull(state, f"{registry.host}/tricky:1")
    assert r.returncode == 0, r.stderr
    assert os.listdir(registry.outside) == []
    root = str(tmp_path / "root")
    unpack(json.loads(r.stdout)["rootfs"], root)
    # a directory of an upper layer replaces a symlink of a lower one
    assert not os.path.islink(os.path.join(root, "escape"))
    assert open(os.path.join(root, "escape/pwned.txt")).read() == "pwned"
    assert not os.path.islink(os.path.join(root, "rel")) and os.listdir(os.path.join(root, "rel")) == ["b.txt"]
    assert sorted(os.listdir(os.path.join(root, "data"))) == ["a.txt"]
    assert open(os.path.join(root, "was-dir")).read() == "now a file"
    assert oct(os.stat(os.path.join(root, "was-dir")).st_mode & 0o777) == "0o600"


def test_an_index_yields_its_linux_amd64_image_sharing_layers(registry, tmp_path):
    state = str(tmp_path / "state")
    assert pull(state, f"{registry.host}/busybox:1").returncode == 0
    r = pull(state, f"{registry.host}/multi:1")
    assert r.returncode == 0, r.stderr
    multi = json.loads(r.stdout)
    # the same amd64 manifest as busybox:1: its layers were kept already
    assert multi["layers_downloaded"] == 0
    assert multi["config"]["architecture"] == "amd64"


def test_a_token_is_fetched_when_the_registry_asks(registry, tmp_path):
    gate = oci_registry.TokenGate(registry.port)
    try:
        # not loopback by name rule? it is 127.0.0.1: plain HTTP, like the registry
        r = pull(str(tmp_path / "state"), f"{gate.host}/busybox:1")
        assert r.returncode == 0, r.stderr
        assert gate.token_requests and "scope=repository%3Abusybox%3Apull" in gate.token_requests[0]
        assert "service=cbtest" in gate.token_requests[0]
    finally:
        gate.stop()


def test_a_registry_that_speaks_tls_is_spoken_to_over_https(registry, tmp_path):
    # the same storage served over HTTPS only (a plain HTTP request gets a 400)
    secure = oci_registry.LocalRegistry(str(tmp_path), tls=True, storage=registry.storage)
    try:
        r = pull(str(tmp_path / "state"), f"{secure.host}/busybox:1")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["layers_downloaded"] == 2
    finally:
        secure.stop()


def test_an_unknown_image_is_a_clear_error(registry, tmp_path):
    state = str(tmp_path / "state")
    for image in (f"{registry.host}/nosuch:1", f"{registry.host}/busybox:nosuchtag"):
        r = pull(state, image)
        assert r.returncode != 0
        assert "not found in its registry" in r.stderr, r.stderr
    assert blobs(state) == []


def test_a_bad_reference_is_refused_before_any_request(tmp_path):
    r = pull(str(tmp_path / "state"), "127.0.0.1:5000/Bad Name")
    assert r.returncode != 0 and "printable ASCII without spaces" in r.stderr, r.stderr


def test_a_tampered_layer_is_refused_and_not_kept(registry, tmp_path):
    state = str(tmp_path / "state")
    r = pull(state, f"{registry.host}/tampered:1")
    assert r.returncode != 0
    assert "digest mismatch" in r.stderr and registry.odd_digest in r.stderr, r.stderr
    kept = blobs(state)
    assert registry.odd_digest[7:] not in kept
    assert not any(n.startswith(".partial") for n in kept)
    assert not os.listdir(os.path.join(state, "apps", "images")) if os.path.isdir(os.path.join(state, "apps", "images")) else True


@pytest.mark.parametrize("image", ["armonly:1", "armsingle:1"])
def test_an_image_for_another_architecture_only_is_refused(registry, tmp_path, image):
    state = str(tmp_path / "state")
    r = pull(state, f"{registry.host}/{image}")
    assert r.returncode != 0
    assert "has no linux/amd64 variant (it has: linux/arm64)" in r.stderr, r.stderr
    assert not os.path.isdir(os.path.join(state, "apps", "images"))


def archive(layout, transport, path, tag="1"):
    dest = f"{transport}:{path}" + (":busybox:1" if transport == "docker-archive" else "")
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout.path}:{tag}", dest], check=True, capture_output=True, timeout=120)


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_an_archive_in_the_image_store_gives_the_same_root(registry, tmp_path, transport):
    state = str(tmp_path / "state")
    os.makedirs(os.path.join(state, "images"))
    archive(registry.layout, transport, os.path.join(state, "images", "bb.tar"))
    r = pull(state, "store:bb.tar")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["image"] == "store:bb.tar" and got["config"]["cmd"][0] == "httpd"
    unpack(got["rootfs"], str(tmp_path / "a"))
    r = pull(state, f"{registry.host}/busybox:1")
    assert r.returncode == 0, r.stderr
    unpack(json.loads(r.stdout)["rootfs"], str(tmp_path / "b"))
    assert listing(str(tmp_path / "a")) == listing(str(tmp_path / "b"))
    assert open(tmp_path / "a" / "www" / "index.html").read() == "hello from the cloudbios app image\n"
    # the archive stays in the store; its scratch copy is gone
    assert os.path.exists(os.path.join(state, "images", "bb.tar"))
    assert not [n for n in os.listdir(os.path.join(state, "apps")) if n.startswith(".")]


def test_a_tampered_archive_or_a_missing_one_is_refused(registry, tmp_path):
    state = str(tmp_path / "state")
    os.makedirs(os.path.join(state, "images"))
    unpacked = tmp_path / "x"
    archive(registry.layout, "oci", str(unpacked))
    # flip a byte in the largest blob (the busybox layer)
    blobs_dir = unpacked / "blobs" / "sha256"
    big = max(blobs_dir.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    data[100] ^= 0xFF
    big.write_bytes(bytes(data))
    subprocess.run(["tar", "-cf", os.path.join(state, "images", "bad.tar"), "-C", str(unpacked), "."], check=True)
    r = pull(state, "store:bad.tar")
    assert r.returncode != 0 and "digest mismatch" in r.stderr and big.name in r.stderr, r.stderr
    assert big.name not in blobs(state)
    assert not os.path.isdir(os.path.join(state, "apps", "images"))
    r = pull(state, "store:nosuch.tar")
    assert r.returncode != 0 and "'store:nosuch.tar' not found" in r.stderr, r.stderr
    r = pull(state, "store:x/../../etc/passwd")
    assert r.returncode != 0 and "may contain only" in r.stderr, r.stderr
