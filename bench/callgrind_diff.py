#!/usr/bin/python3
"""Where two programs' instructions per call differ, from callgrind runs of each at two call
counts (bench/client_callgrind.sh).

  callgrind_diff.py CALLS_SMALL CALLS_LARGE A_SMALL A_LARGE B_SMALL B_LARGE [TOP]

Each *_SMALL/*_LARGE is a callgrind output file. Per function, instructions per call =
(cost in LARGE - cost in SMALL) / (CALLS_LARGE - CALLS_SMALL), self cost; prints markdown
tables of the functions where B spends the most more than A per call, and of B's own functions
(names with `sluice::`) by inclusive cost per call.
"""
import re
import subprocess
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+)$")


def costs(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no",
         f"--inclusive={'yes' if inclusive else 'no'}", path],
        capture_output=True, text=True, check=True).stdout
    result = {}
    for line in out.splitlines():
        m = LINE.match(line)
        # Only the function table: not the totals, nor call lines (`=> callee`).
        if m and "PROGRAM TOTALS" not in m.group(2) and not m.group(2).startswith(
                ("=>", "events annotated")):
            name = m.group(2)
            result[name] = result.get(name, 0) + int(m.group(1).replace(",", ""))
    return result


def per_call(small, large, calls):
    return {k: (large.get(k, 0) - small.get(k, 0)) / calls for k in set(small) | set(large)}


def short(name, width=110):
    """file:function [object] -> function (object basename), cut to `width` characters."""
    obj = ""
    m = re.match(r"^(.*?)\s+\[(.+)\]$", name)
    if m:
        name, obj = m.group(1), m.group(2).rsplit("/", 1)[-1]
    if ":" in name and not name.startswith("0x"):
        name = name.split(":", 1)[1] if name.startswith(("???", ".", "/")) else name
    name = re.sub(r"<[^<>]{40,}>", "<…>", name)
    text = f"{name} ({obj})" if obj else name
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv):
    if len(argv) not in (7, 8):
        print(__doc__)
        return 2
    calls = int(argv[2]) - int(argv[1])
    a_small, a_large, b_small, b_large = argv[3:7]
    top = int(argv[7]) if len(argv) == 8 else 12
    a = per_call(costs(a_small, False), costs(a_large, False), calls)
    b = per_call(costs(b_small, False), costs(b_large, False), calls)
    diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    print(f"Functions where the second side spends the most more per call (self cost, "
          f"total difference {sum(diff.values()):,.0f} instructions/call):")
    print()
    print("| function | first side / call | second side / call | difference |")
    print("|---|---:|---:|---:|")
    for k in sorted(diff, key=diff.get, reverse=True)[:top]:
        print(f"| `{short(k)}` | {a.get(k, 0):,.0f} | {b.get(k, 0):,.0f} | {diff[k]:+,.0f} |")
    print()
    own = per_call(costs(b_small, True), costs(b_large, True), calls)
    own = {k: v for k, v in own.items() if "sluice::" in k}
    if own:
        print("The second side's own functions (`sluice::`), inclusive cost per call:")
        print()
        print("| function | instructions / call |")
        print("|---|---:|")
        for k in sorted(own, key=own.get, reverse=True)[:top]:
            print(f"| `{short(k)}` | {own[k]:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
