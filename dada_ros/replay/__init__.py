"""Offline and real-time rosbag replay of the upsampling node, scored against ground truth.

No ROS installation is needed for the offline path: bags are read and written with ``rosbags``
(:mod:`.bag`), messages are converted with :mod:`dada_ros.ros.conversions` (the node's own
conversions), frames are matched by the node's synchroniser (:mod:`dada_ros.ros.sync`) and
upsampled by :class:`dada_ros.core.pipeline.FramePipeline` (the node's per-frame code path).

Modules:
    bag        open / list / read / write rosbag2 bags (sqlite3 and mcap) with the Jazzy typestore
    topics     which bag topic feeds which input; remaps; "what does the bag have" errors
    sample     the synthetic sample bag (RGB, ToF-like depth, camera_infos, ground truth)
    methods    ``dada-free[:cold|naive|flow[:N]]``, ``bicubic``, ... -> one runner per method
    scoring    per-frame errors and the incrementally written metrics.json with its summary
    outputs    output bag: upsampled depth, camera_info, point cloud (the node's topics)
    evaluate   the offline loop: read -> sync -> methods -> score -> write
    report     PNG figures, report.md and the one-screen console summary
    realtime   replay into a running ``upsample_node`` over rclpy at bag rate
"""
