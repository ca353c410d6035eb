// Small enhancements over plain forms; every page still works by submitting the form.
(function () {
  "use strict";
  var csrf = function () { return document.body.dataset.csrf; };

  document.addEventListener("submit", function (e) {
    var button = e.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) e.preventDefault();
  });

  // Phone photos are shrunk before upload: a village's mobile data is slow, and the page's
  // request limit is the API's ordinary one.
  function shrink(file) {
    return createImageBitmap(file).then(function (bitmap) {
      var scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.8); });
    });
  }

  function addThumb(box, name, id, url) {
    var span = document.createElement("span");
    span.className = "thumb";
    span.innerHTML = '<input type="hidden"><img alt="照片">';
    span.firstChild.name = name;
    span.firstChild.value = id;
    span.lastChild.src = url;
    box.appendChild(span);
  }

  document.addEventListener("change", function (e) {
    var input = e.target;
    if (!input.dataset || !input.dataset.photoFor) return;
    var box = document.getElementById(input.dataset.photoFor);
    Array.prototype.forEach.call(input.files, function (file) {
      shrink(file).then(function (blob) {
        var body = new FormData();
        body.append("file", blob, "photo.jpg");
        return fetch(input.dataset.upload, { method: "POST", body: body, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
      }).then(function (response) {
        if (!response.ok) throw new Error("upload " + response.status);
        return response.json();
      }).then(function (photo) {
        addThumb(box, input.dataset.photoFor, photo.id, photo.thumbnail_url);
        box.dispatchEvent(new Event("photo-added", { bubbles: true }));
      }).catch(function () { window.alert("照片上传失败，请重试"); });
    });
    input.value = "";
  });

  // A card being filled in is kept on the phone until it is saved, so a lost connection or a
  // closed tab loses nothing; a draft made on an older revision of the card is dropped.
  function draftKey() { return "vp-draft:" + location.pathname; }
  function keepDraft(form) {
    var values = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf" || el.type === "file") return;
      if (el.type === "radio" && !el.checked) return;
      (values[el.name] = values[el.name] || []).push(el.value);
    });
    localStorage.setItem(draftKey(), JSON.stringify({ revision: form.dataset.revision, values: values }));
  }
  function restoreDraft(form) {
    var draft = JSON.parse(localStorage.getItem(draftKey()) || "null");
    if (!draft || draft.revision !== form.dataset.revision) return;
    Object.keys(draft.values).forEach(function (name) {
      var given = draft.values[name];
      if (name.indexOf("photos-") === 0) {
        var box = document.getElementById(name);
        box.innerHTML = "";
        given.forEach(function (id) { addThumb(box, name, id, "/web/photos/" + id + "?thumb=1"); });
        return;
      }
      Array.prototype.forEach.call(form.querySelectorAll('[name="' + name + '"]'), function (el) {
        if (el.type === "radio") el.checked = el.value === given[0]; else el.value = given[0];
      });
    });
    document.getElementById("draft-restored").hidden = false;
  }
  var cardForm = document.getElementById("card-form");
  if (cardForm) {
    if (new URLSearchParams(location.search).get("saved") === "1") localStorage.removeItem(draftKey());
    else restoreDraft(cardForm);
    cardForm.addEventListener("change", function () { keepDraft(cardForm); });
    cardForm.addEventListener("input", function () { keepDraft(cardForm); });
    cardForm.addEventListener("photo-added", function () { keepDraft(cardForm); });
  }

  // The camera scanner (vendored jsQR): fills the code field and submits the form.
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-scan-target]");
    if (!button) return;
    var field = document.getElementById(button.dataset.scanTarget);
    var box = document.querySelector(".scanner");
    var video = box.querySelector("video");
    if (!navigator.mediaDevices || !window.jsQR) { window.alert("此浏览器无法打开摄像头，请手动输入"); return; }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      box.hidden = false;
      video.srcObject = stream;
      video.play();
      var canvas = document.createElement("canvas");
      var context = canvas.getContext("2d", { willReadFrequently: true });
      (function tick() {
        if (video.readyState === video.HAVE_ENOUGH_DATA) {
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
          context.drawImage(video, 0, 0);
          var found = window.jsQR(context.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
          if (found && found.data) {
            stream.getTracks().forEach(function (t) { t.stop(); });
            field.value = found.data;
            field.form.requestSubmit();
            return;
          }
        }
        requestAnimationFrame(tick);
      })();
    }).catch(function () { window.alert("无法打开摄像头，请手动输入"); });
  });

  // The town console's charts (vendored ECharts), drawn from the numbers in the page.
  var AGES = [["under_7_days", "7天内", "#9bc53d"], ["days_7_to_30", "7–30天", "#e0a100"], ["over_30_days", "超30天", "#c0392b"]];
  function chart(id, title, data, yAxis, series) {
    var c = echarts.init(document.getElementById(id));
    c.setOption({
      animation: false, title: { text: title }, tooltip: { trigger: "axis" },
      legend: { top: 36 }, grid: { containLabel: true, top: 90, bottom: 16 },
      xAxis: { type: "category", data: data.villages }, yAxis: yAxis, series: series
    });
    return c;
  }
  function byAge(counts) {
    return AGES.map(function (a) {
      return { name: a[1], type: "bar", stack: "age", data: counts[a[0]], itemStyle: { color: a[2] } };
    });
  }
  function charts() {
    var source = document.getElementById("chart-data");
    if (!source || !window.echarts) return;
    var data = JSON.parse(source.textContent);
    var drawn = [
      chart("chart-participation", "参与率（%）", data, { type: "value", max: 100 },
        [{ name: "参与率", type: "bar", data: data.participation, itemStyle: { color: "#1f6f43" } }]),
      chart("chart-lateness", "评分周期：按时与逾期", data, { type: "value", minInterval: 1 }, [
        { name: "按时", type: "bar", stack: "p", data: data.on_time, itemStyle: { color: "#1f6f43" } },
        { name: "逾期", type: "bar", stack: "p", data: data.late, itemStyle: { color: "#c0392b" } }
      ]),
      chart("chart-spread", "得分标准差与突出评分员", data,
        [{ type: "value", name: "标准差" }, { type: "value", name: "人", minInterval: 1 }], [
        { name: "最近一期标准差", type: "bar", data: data.spread, itemStyle: { color: "#1a5fb4" } },
        { name: "突出评分员", type: "line", yAxisIndex: 1, data: data.standouts, itemStyle: { color: "#c0392b" } }
      ]),
      chart("chart-claims", "待审申报（按等待天数）", data, { type: "value", minInterval: 1 }, byAge(data.claims)),
      chart("chart-objections", "待处理异议（按等待天数）", data, { type: "value", minInterval: 1 }, byAge(data.objections)),
      chart("chart-money", "积分兑换与待兑积分", data, { type: "value", name: "积分" }, [
        { name: "本季度已兑换", type: "bar", data: data.redeemed, itemStyle: { color: "#1f6f43" } },
        { name: "待兑积分", type: "bar", data: data.outstanding, itemStyle: { color: "#1a5fb4" } }
      ])
    ];
    window.addEventListener("resize", function () { drawn.forEach(function (c) { c.resize(); }); });
  }
  // This script is deferred, so it runs before DOMContentLoaded, by which time ECharts (deferred
  // after it) has loaded too.
  document.addEventListener("DOMContentLoaded", charts);
})();
