#!/usr/bin/env bash
# Build .gpu/: site.tar.xz, the Python packages the Python packages bench/gpu.sh needs on the GPU machine
# (Python 3.12, torch + CUDA, onnxruntime CPU, numpy/pandas/pyarrow/opencv/onnx/timm/
# scikit-image already there; no internet; at most 64 MiB travel with the working tree).
#
#   bench/gpu_pack.sh   # here, with internet; then carry .gpu/site.tar.xz and .gpu/shared
#
# and .gpu/shared: the weights and media bench/gpu.sh uses (../shared does not travel).
#
# What it carries (cp312 / manylinux_2_28 x86_64 or pure-Python wheels, --no-deps):
#   insightface 2.1, av 18.1.0, botocore 1.44.8 (+ jmespath),
#   open_clip_torch 3.3.0 (+ ftfy, wcwidth), onnx2torch 1.5.15.
# Unpacked and trimmed, xz-compressed (sizes: docs/performance.md); botocore keeps only
# the service models rekolab reads (rekognition, s3, sts, sns, kinesis).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .gpu/wheels
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels \
  insightface==2.1 av==18.1.0 botocore==1.44.8 jmespath==1.1.0 \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 onnx2torch==1.5.15
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
site="$tmp/site"
mkdir "$site"
for w in .gpu/wheels/*.whl; do unzip -q -o "$w" -d "$site"; done
find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d ! -name rekognition ! -name s3 ! -name sts \
  ! -name sns ! -name kinesis -exec rm -rf {} +
rm -rf "$site/open_clip_train"
XZ_OPT=-9 tar -C "$tmp" -cJf .gpu/site.tar.xz site
S=${SHARED:-../shared}
rm -rf .gpu/shared
mkdir -p .gpu/shared/models/insightface/models/scrfd500m_mfn128 .gpu/shared/models/insightface/models/scrfd500m_genderage \
  .gpu/shared/models/face_attributes .gpu/shared/models/coco_detection .gpu/shared/media/video .gpu/shared/media/scenes
cp "$S"/models/insightface/models/scrfd500m_mfn128/*.onnx .gpu/shared/models/insightface/models/scrfd500m_mfn128/
cp "$S"/models/insightface/models/scrfd500m_genderage/genderage.onnx .gpu/shared/models/insightface/models/scrfd500m_genderage/
cp "$S"/models/face_attributes/*.onnx .gpu/shared/models/face_attributes/
cp "$S"/models/coco_detection/* .gpu/shared/models/coco_detection/
cp "$S"/media/video/short_hamilton_clip.mp4 .gpu/shared/media/video/
cp "$S"/media/scenes/dog.jpg .gpu/shared/media/scenes/
mkdir -p .gpu/shared/media/faces && cp "$S"/media/faces/lin-manuel-miranda.png "$S"/media/faces/obama.jpg "$S"/media/faces/obama2.jpg .gpu/shared/media/faces/
du -sh .gpu/site.tar.xz .gpu/shared
