"""Vision for policies: ResNet-18 and MobileNetV2 backbones written in Twin (named as their weights files, so
ImageNet weights load: a local file, or MobileNetV2's that Twin installs), the image-token encoder shared by ACT and
the flow policy, and image preprocessing."""
