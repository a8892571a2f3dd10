"""The racelens distribution: `pip install .` gives the `racelens` command and the pipeline.

This file is also what Beam ships to remote workers with --setup_file.
"""

from setuptools import find_packages, setup

setup(
    name="racelens",
    version="0.1.0",
    description="Photo-based race timing: an Apache Beam pipeline and a Streamlit dashboard.",
    python_requires=">=3.11",
    packages=find_packages(
        include=["pipeline", "pipeline.*", "transforms", "transforms.*", "dashboard", "dashboard.*"]
    ),
    install_requires=[
        "apache-beam==2.77.0",
        # Beam's DaskRunner (`racelens run --runner=DaskRunner`), as Beam's `dask` extra pins them.
        "dask>=2024.4.2",
        "distributed>=2024.4.2",
        "pyarrow>=15",
        "opencv-python-headless>=4.8",
        "pytesseract>=0.3.10",
        "tesserocr>=2.7",  # in-process tesseract: no process start per photo
        "imagehash>=4.3",
        "fastparquet>=2024.2",
        "streamlit>=1.67",  # the dashboard uses button shortcuts and image alt texts
        "pillow>=10.1",
        "numpy>=1.26",
        "pyyaml>=6",
        # Faces: dlib's HOG detector, 5-point landmarks and ResNet embeddings (MatchFaces).
        "dlib-bin>=19.24",
        "face-recognition-models>=0.3.0",
        # PP-OCR (detection + recognition) through onnxruntime; the models ship in the wheel.
        # onnxruntime also runs dlib's face ResNet (transforms/face_net.py).
        "rapidocr-onnxruntime>=1.3",
        # Folds PP-OCR's recogniser into fewer ops when it loads (transforms/ppocr_model.py).
        "onnx>=1.15",
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6.100", "ruff>=0.6", "selenium>=4.20"],
        "gcp": ["apache-beam[gcp]==2.77.0"],
        "aws": ["apache-beam[aws]==2.77.0"],
    },
    entry_points={"console_scripts": ["racelens=pipeline.__main__:command"]},
)
