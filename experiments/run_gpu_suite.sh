#!/usr/bin/env bash
# The GPU figures of the benchmarks, in parts that each fit in a 10-minute slot of a lent GPU:
#
#   bash experiments/run_gpu_suite.sh inference|alignment|alignment64|pipeline [OUT_DIR]
#
# Tables go to OUT_DIR (default experiments/results), with "gpu" in their names.
set -u -o pipefail
part=${1:?usage: run_gpu_suite.sh inference|alignment|alignment64|pipeline [OUT_DIR]}
out=${2:-experiments/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"

case $part in
inference)
  python3 experiments/bench_inference.py --models 224_linear,512_dpt --dtypes float32,bfloat16 --batches 1,8 \
    --repeats 10 --out "$out/bench_inference_gpu.md"
  # training step of the full-size 224 model, batch 16 per GPU as in the official recipe, bf16 compute
  python3 experiments/bench_train.py --config configs/train_224_linear.py --steps 10 --warmup 2 \
    --config.data.batch_size=16 --config.model.dtype=bfloat16
  cp experiments/results/bench_train_gpu_train_224_linear.json "$out/" ;;
alignment)
  python3 experiments/bench_alignment.py --sizes 224,512x384 --n 4,8,16,32 --graphs complete,swin,logwin \
    --sparse-from 16 --timeout 150 --out "$out/bench_alignment_gpu.md"
  python3 experiments/bench_alignment.py --sizes 512x384 --n 64 --graphs swin,logwin --sparse-from 64 \
    --timeout 150 --out "$out/bench_alignment_gpu_64_sparse.md" ;;
alignment64)
  # 64 images at 512x384, complete graph: 4032 pairs, 25 GB of pointmaps and confidences on the GPU
  python3 experiments/bench_alignment.py --sizes 512x384 --n 64 --graphs complete --edge-chunk 512 \
    --timeout 560 --out "$out/bench_alignment_gpu_64_complete.md" ;;
pipeline)
  python3 experiments/bench_pipeline.py --sizes 224,512 --num-images 2,8,16 --head linear --tag gpu_linear
  python3 experiments/bench_pipeline.py --sizes 512 --num-images 2,8,16 --head dpt --tag gpu_dpt
  cp experiments/results/bench_pipeline_gpu_*.md "$out/" ;;
*)
  echo "unknown part: $part" >&2; exit 2 ;;
esac
