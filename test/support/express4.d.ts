// `express4` is an npm alias of express@4, installed so the adapter is tested on both majors.
declare module 'express4' {
  import express = require('express')
  export = express
}
