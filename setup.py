"""Build adder_det and its extension ``adder_det._C``.

    pip install --no-build-isolation -e .

The C++ CPU kernels are always built; the CUDA kernels when a GPU is visible
or ``FORCE_CUDA=1`` (then for ``TORCH_CUDA_ARCH_LIST`` if set). torch must be
installed first: the build imports it (hence --no-build-isolation).
``ADDER_DET_NVCC_FLAGS`` (space-separated) adds nvcc flags, for comparing
kernel variants (tools/gpu_check.sh, GPU_CHECK_VARIANTS).
"""
import glob
import os

from setuptools import find_packages, setup


def extensions():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, \
        CUDAExtension
    sources = ['csrc/adder2d.cpp'] + sorted(glob.glob('csrc/cpu/*.cpp'))
    # -fopenmp: at::parallel_for is a header template; without it the
    # extension's parallel loops silently run on one thread.
    cxx = ['-O3', '-fopenmp']
    link = ['-fopenmp']
    with_cuda = os.environ.get('FORCE_CUDA') == '1' or (
        torch.cuda.is_available() and CUDA_HOME is not None)
    if not with_cuda:
        return [CppExtension('adder_det._C', sources,
                             extra_compile_args={'cxx': cxx},
                             extra_link_args=link)]
    sources += sorted(glob.glob('csrc/cuda/*.cpp')) + sorted(
        glob.glob('csrc/cuda/*.cu'))
    return [
        CUDAExtension(
            'adder_det._C',
            sources,
            define_macros=[('ADDER_DET_WITH_CUDA', None)],
            extra_link_args=link,
            extra_compile_args={
                'cxx': cxx,
                'nvcc': ['-O3', '-Xcompiler', '-fopenmp'] +
                os.environ.get('ADDER_DET_NVCC_FLAGS', '').split(),
            })
    ]


def cmdclass():
    from torch.utils.cpp_extension import BuildExtension
    return {'build_ext': BuildExtension.with_options(use_ninja=True)}


setup(
    name='adder_det',
    version='0.1.0',
    description='Adder neural network detectors for MMDetection 3.x',
    packages=find_packages(include=['adder_det', 'adder_det.*']),
    python_requires='>=3.9',
    install_requires=['torch'],
    ext_modules=extensions(),
    cmdclass=cmdclass(),
    zip_safe=False,
)
