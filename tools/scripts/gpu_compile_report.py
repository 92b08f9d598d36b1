#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What GPU compilers say about the kernels a GPU gets by default, without a GPU.

Exports the programs of `clattn kernels export --target nvidia` and `--target amd` (exactly what such a device
builds by default), compiles each offline and prints one table:
  NVIDIA: clang-14 (nvptx64-nvidia-nvcl) + libclc, llc-14 for sm_80 PTX, then `ptxas -arch=sm_90 -v`: registers,
          spill bytes, stack frame, shared memory, and the occupancy (resident warps per SM of 64) those allow.
  AMD:    clang-14 (amdgcn-amd-amdhsa) + libclc, llc-14 for gfx90a and gfx1030: VGPRs, scratch bytes, LDS bytes and
          occupancy (waves per SIMD: LLVM's figure from the registers, or fewer where the work-groups' local
          memory does not fit the compute unit that many times).
Every kernel of every program is a row. Exit status 0 when everything compiled; with --check, 1 when a default
program of the flash or decode kernels (sdpa_flash, sdpa_decode) misses the targets of issue 14 (no stack or spills
on sm_90 and gfx90a). The exports' decode programs carry the packed rows of their shape (one: no GQA); each is
compiled again for the row bounds of --decode-rows (GQA groups of 4, and the kernel's bound of 16, by default).

Usage: gpu_compile_report.py --clattn build/clattn [--head-dims 64,128] [--dtypes f32] [--keep DIR] [--check]
       gpu_compile_report.py --dir EXPORTS   (EXPORTS/nvidia and EXPORTS/amd written by clattn kernels export)
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CLC = "/usr/lib/clc"
PTXAS_CANDIDATES = ["ptxas", "/usr/local/cuda/bin/ptxas"]
AMD_CPUS = ["gfx90a", "gfx1030"]


def find_tool(names):
    for n in names:
        p = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if p:
            return p
    return None


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd[:3]), r.stderr[-2000:]))
    return r.stdout + r.stderr


def frontend(src, options, triple, cpu, libclc, work, stem):
    """OpenCL C -> linked, optimised LLVM bitcode."""
    opts = [o for o in options.split() if o != "-cl-std=CL1.2"]
    bc, linked, opt = (os.path.join(work, stem + s) for s in (".bc", ".linked.bc", ".opt.bc"))
    cmd = ["clang-14", "-x", "cl", "-cl-std=CL1.2", "-target", triple, "-Xclang", "-finclude-default-header",
           "-O3", "-emit-llvm", "-c", src, "-o", bc] + opts
    if cpu:
        cmd[6:6] = ["-mcpu=" + cpu, "-nogpulib"]
    else:
        # vload_half and vstore_half are core OpenCL, but clang-14's header declares them for nvptx only with
        # cl_khr_fp16 (which NVIDIA's drivers report).
        cmd[6:6] = ["-Xclang", "-cl-ext=+cl_khr_fp16"]
    run(cmd, work)
    run(["llvm-link-14", bc, os.path.join(CLC, libclc), "-o", linked], work)
    run(["opt-14", "-O3", linked, "-o", opt], work)
    return opt


def sm90_occupancy(regs, smem, threads):
    """Resident warps per SM of 64 on sm_90 (65536 registers, 228 KiB shared memory with 1 KiB per block kept
    back, 32 blocks, 2048 threads)."""
    warps = max(1, (threads + 31) // 32)
    regs_per_warp = ((max(regs, 1) * 32 + 255) // 256) * 256
    by_regs = 65536 // (regs_per_warp * warps)
    by_smem = (228 * 1024) // (smem + 1024) if smem else 32
    by_threads = 64 // warps
    return min(by_regs, by_smem, by_threads, 32) * warps


def group_sizes(bc, work):
    """Work-group sizes fixed by reqd_work_group_size, from the kernels' metadata: clang does not pass them on to
    the PTX as .reqntid, and the AMD assembly's statistics leave them out."""
    ir = run(["llvm-dis-14", bc, "-o", "-"], work)
    meta = dict((m.group(1), m.group(2)) for m in re.finditer(r"^!(\d+) = !\{i32 (\d+), i32 1, i32 1\}", ir, re.M))
    sizes = {}
    for m in re.finditer(r"^define [^@]*@(\w+)\(.*!reqd_work_group_size !(\d+)", ir, re.M):
        if m.group(2) in meta:
            sizes[m.group(1)] = int(meta[m.group(2)])
    return sizes


def nvidia(src, options, work, stem, ptxas):
    bc = frontend(src, options, "nvptx64-nvidia-nvcl", None, "nvptx64--nvidiacl.bc", work, stem)
    ptx = os.path.join(work, stem + ".ptx")
    run(["llc-14", "-march=nvptx64", "-mcpu=sm_80", bc, "-o", ptx], work)
    reqntid = group_sizes(bc, work)
    log = run([ptxas, "-arch=sm_90", "-v", ptx, "-o", os.path.join(work, stem + ".cubin")], work)
    rows = []
    for block in re.split(r"ptxas info\s*: Compiling entry function ", log)[1:]:
        name = re.match(r"'(\w+)'", block).group(1)
        stack = int(re.search(r"(\d+) bytes stack frame", block).group(1))
        spill = int(re.search(r"(\d+) bytes spill stores", block).group(1)) + int(
            re.search(r"(\d+) bytes spill loads", block).group(1))
        regs = int(re.search(r"Used (\d+) registers", block).group(1))
        sm = re.search(r"(\d+) bytes smem", block)
        smem = int(sm.group(1)) if sm else 0
        threads = reqntid.get(name) or 256
        occ = "%d/64 warps%s" % (sm90_occupancy(regs, smem, threads), "" if reqntid.get(name) else " (wg 256?)")
        rows.append(("sm_90", name, "%d regs" % regs, stack, spill, smem, occ))
    return rows


# Local memory (LDS) shared by the work-groups of one compute unit (gfx90a) or work-group processor (gfx1030 in
# its default WGP mode), the SIMDs that share it, and its allocation granule.
AMD_LDS = {"gfx90a": (65536, 4), "gfx1030": (131072, 4)}
LDS_GRANULE = 512


def lds_waves(cpu, lds, group, wave):
    """Waves per SIMD that local memory allows: whole work-groups per compute unit, their waves spread over its
    SIMDs (an average: 0.75 is 3 waves on a compute unit of 4 SIMDs). LLVM 14's Occupancy counts the groups'
    waves per SIMD without dividing by the SIMDs, so it misses this limit."""
    per_cu, simds = AMD_LDS[cpu]
    if not lds:
        return None
    groups = per_cu // ((lds + LDS_GRANULE - 1) // LDS_GRANULE * LDS_GRANULE)
    return groups * ((group + wave - 1) // wave) / simds


def amd(src, options, work, stem, cpu):
    bc = frontend(src, options, "amdgcn-amd-amdhsa", cpu, "amdgcn--amdhsa.bc", work, stem + "." + cpu)
    asm = os.path.join(work, stem + "." + cpu + ".s")
    run(["llc-14", "-march=amdgcn", "-mcpu=" + cpu, bc, "-o", asm], work)
    text = open(asm).read()
    sizes = group_sizes(bc, work)
    rows = []
    # Each kernel's statistics follow its code as comments: "; NumVgprs: 164" ... "; Occupancy: 3".
    for m in re.finditer(r"\n(\w+):\s*;\s*@\1\n((?:.|\n)*?; Occupancy: \d+)", text):
        name, body = m.group(1), m.group(2)

        def num(key):
            x = re.findall(r"; %s: (\d+)" % key, body)
            return int(x[-1]) if x else 0

        wave32 = re.search(r"\.amdhsa_kernel %s\n(?:.|\n)*?\.amdhsa_wavefront_size32 1" % name, text)
        vgprs = num("TotalNumVgprs") or num("NumVgprs")
        occ = num("Occupancy")
        by_lds = lds_waves(cpu, num("LDSByteSize"), sizes.get(name, 256), 32 if wave32 else 64)
        if by_lds is not None and by_lds < occ:
            occ = by_lds
        rows.append((cpu, name, "%d VGPRs" % vgprs, num("ScratchSize"), 0, num("LDSByteSize"),
                     "%g waves/SIMD" % occ))
    return rows


def label(options):
    """The options that tell programs apart, shortened: head dims, dtype, mask, causal, then the kernel's own."""
    d = dict(re.findall(r"-D(\w+)=(\S+)", options))
    parts = ["d%s" % d.get("HEAD_DIM", "?")]
    if d.get("V_HEAD_DIM") != d.get("HEAD_DIM"):
        parts.append("dv%s" % d.get("V_HEAD_DIM"))
    parts.append(["f32", "f16", "bf16"][int(d.get("Q_DTYPE", 0))])
    for key, name in (("MASK_KIND", "mask"), ("CAUSAL", "causal"), ("HAS_WINDOW", "window"),
                      ("HAS_KEY_LENGTHS", "klen"), ("HAS_LSE", "lse")):
        if d.get(key, "0") != "0":
            parts.append("%s%s" % (name, d[key]))
    common = {"HEAD_DIM", "V_HEAD_DIM", "Q_DTYPE", "K_DTYPE", "V_DTYPE", "O_DTYPE", "MASK_KIND", "MASK_DTYPE",
              "CAUSAL", "HAS_WINDOW", "HAS_KEY_LENGTHS", "HAS_LSE", "UNIT_DSTRIDE"}
    parts += ["%s=%s" % (k, v) for k, v in d.items() if k not in common]
    return " ".join(parts)


def programs(export_dir, decode_rows):
    with open(os.path.join(export_dir, "manifest.json")) as f:
        manifest = json.load(f)
    for p in manifest["programs"]:
        src = os.path.join(export_dir, p["source_file"])
        with open(os.path.join(export_dir, p["options_file"])) as f:
            options = f.read().strip()
        stem = p["source_file"][:-3]
        yield src, options, stem
        if p.get("source") == "sdpa_decode" and "-DROWS=" in options:
            for rows in decode_rows:
                yield src, re.sub(r"-DROWS=\d+", "-DROWS=%d" % rows, options), "%s.rows%d" % (stem, rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clattn", help="the clattn program, to export the programs first")
    ap.add_argument("--dir", help="existing exports: DIR/nvidia and DIR/amd")
    ap.add_argument("--keep", help="write exports and compiler outputs here instead of a temporary directory")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--dtypes", default="f32")
    ap.add_argument("--causal", default="none")
    ap.add_argument("--masks", default="none")
    ap.add_argument("--phases", default="prefill,decode")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--decode-rows", default="4,16", help="row bounds to compile each decode program for too")
    ap.add_argument("--check", action="store_true", help="fail when a flash or decode program has a stack or spills")
    args = ap.parse_args()
    missing = [t for t in ("clang-14", "llc-14", "llvm-link-14", "opt-14", "llvm-dis-14") if not shutil.which(t)]
    ptxas = find_tool(PTXAS_CANDIDATES)
    if missing or not ptxas or not os.path.isdir(CLC):
        print("gpu_compile_report: skipped, missing %s" % ", ".join(
            missing + ([] if ptxas else ["ptxas"]) + ([] if os.path.isdir(CLC) else [CLC])))
        return 77
    base = args.keep or tempfile.mkdtemp(prefix="clattn-gpu-report-")
    os.makedirs(base, exist_ok=True)
    try:
        if args.dir:
            exports = args.dir
        elif args.clattn:
            exports = os.path.join(base, "exports")
            for target in ("nvidia", "amd"):
                out = os.path.join(exports, target)
                os.makedirs(out, exist_ok=True)
                subprocess.run([args.clattn, "kernels", "export", "--target", target, "--out", out,
                                "--head-dims", args.head_dims, "--dtypes", args.dtypes, "--causal", args.causal,
                                "--masks", args.masks, "--phases", args.phases], check=True,
                               stdout=subprocess.DEVNULL)
        else:
            ap.error("give --clattn or --dir")
        work = os.path.join(base, "compiled")
        os.makedirs(work, exist_ok=True)
        jobs = []
        decode_rows = [int(x) for x in args.decode_rows.split(",") if x]
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for src, options, stem in programs(os.path.join(exports, "nvidia"), decode_rows):
                jobs.append((label(options), pool.submit(nvidia, src, options, work, stem, ptxas)))
            for src, options, stem in programs(os.path.join(exports, "amd"), decode_rows):
                for cpu in AMD_CPUS:
                    jobs.append((label(options), pool.submit(amd, src, options, work, stem, cpu)))
            rows = []
            failed = 0
            for lab, fut in jobs:
                try:
                    result = fut.result()
                except RuntimeError as e:
                    failed += 1
                    print("gpu_compile_report: %s: %s" % (lab, str(e).splitlines()[0]), file=sys.stderr)
                    print(str(e)[-1500:], file=sys.stderr)
                    continue
                for r in result:
                    # A program built only for sdpa_combine (the common defines alone) also holds the tiled kernel
                    # with its defaults, which nothing launches.
                    if r[1] == "sdpa_fused" and "WG_SIZE" not in lab:
                        continue
                    rows.append((r[0], r[1], lab) + r[2:])
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    head = ("target", "kernel", "program", "registers", "stack/scratch B", "spill B", "local B", "occupancy")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    if args.check:
        bad = [r for r in rows if r[1] in ("sdpa_flash", "sdpa_decode") and r[0] in ("sm_90", "gfx90a") and
               (r[4] or r[5])]
        for r in bad:
            print("gpu_compile_report: %s %s %s has a stack/scratch of %s bytes and %s spill bytes" %
                  (r[0], r[1], r[2], r[4], r[5]), file=sys.stderr)
        # Occupancy on gfx90a: at least 4 waves per SIMD at head dim 64, 2 at 128 (fp32).
        want = {"d64 f32": 4, "d128 f32": 2}
        for r in rows:
            need = next((w for k, w in want.items() if r[2].startswith(k + " ")), None)
            if r[0] == "gfx90a" and r[1] == "sdpa_flash" and need and float(r[7].split()[0]) < need:
                print("gpu_compile_report: %s %s %s: occupancy %s, below %d" % (r[0], r[1], r[2], r[7], need),
                      file=sys.stderr)
                bad.append(r)
        return 1 if bad or failed else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
