"""Make an MSI written by msitools' wixl the same bytes on every build.

    /usr/bin/python3 msistamp.py MSI PACKAGE_CODE EPOCH

wixl (msitools 0.101) gives every MSI a random package code and the build's time as its
creation and last-save times, all in the SummaryInformation stream; nothing else in the
file differs between two builds. This rewrites those three properties in place (same
sizes, so the compound file's layout is untouched): the package code given (a new one
for each MSI that differs, as Windows Installer wants) and EPOCH (seconds since 1970) as
both times. Needs python3-olefile (apt).
"""
import struct
import sys

import olefile

STREAM = "\x05SummaryInformation"
PID_REVNUMBER, PID_CREATE_DTM, PID_LASTSAVE_DTM = 9, 12, 13
VT_LPSTR, VT_FILETIME = 30, 64


def stamp(data, code, epoch):
    buf = bytearray(data)
    (sections,) = struct.unpack_from("<I", buf, 24)
    if sections < 1:
        raise SystemExit("msistamp: no property section in %s" % STREAM)
    (section,) = struct.unpack_from("<I", buf, 28 + 16)
    _, count = struct.unpack_from("<II", buf, section)
    filetime = (epoch + 11644473600) * 10_000_000
    done = set()
    for i in range(count):
        pid, off = struct.unpack_from("<II", buf, section + 8 + 8 * i)
        at = section + off
        (vt,) = struct.unpack_from("<I", buf, at)
        if pid == PID_REVNUMBER and vt == VT_LPSTR:
            (size,) = struct.unpack_from("<I", buf, at + 4)
            value = ("{%s}" % code.upper()).encode("ascii") + b"\0"
            if len(value) != size:
                raise SystemExit("msistamp: the package code takes %d bytes, not %d" % (size, len(value)))
            buf[at + 8 : at + 8 + size] = value
            done.add(pid)
        elif pid in (PID_CREATE_DTM, PID_LASTSAVE_DTM) and vt == VT_FILETIME:
            struct.pack_into("<Q", buf, at + 4, filetime)
            done.add(pid)
    if done != {PID_REVNUMBER, PID_CREATE_DTM, PID_LASTSAVE_DTM}:
        raise SystemExit("msistamp: found only properties %s of 9, 12, 13" % sorted(done))
    return bytes(buf)


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    path, code, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ole = olefile.OleFileIO(path, write_mode=True)
    ole.write_stream(STREAM, stamp(ole.openstream(STREAM).read(), code, epoch))
    ole.close()


if __name__ == "__main__":
    main()
